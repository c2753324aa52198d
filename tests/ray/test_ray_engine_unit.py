"""RayEngine's own logic over a fake deployment handle (no cluster): the one retry when a replica
dies, replica errors handed on as our error types, cancellation, stats summed over replicas."""
from __future__ import annotations

from typing import Any

import pytest

from reranker.cancel import CancelToken
from reranker.content import Content
from reranker.engine.engine import EngineStats, Scoring
from reranker.errors import InputError, RequestCancelled, RerankerError
from reranker.models.base import ModelInfo

pytest.importorskip("ray")
from ray.exceptions import ActorDiedError, RayTaskError  # noqa: E402

from reranker.engine.ray_replica import ReplicaAnswer  # noqa: E402
from reranker.engine.ray_serve import RayEngine, app_name  # noqa: E402

INFO = ModelInfo("mini-v1", "mini", "1", "mini", "float32", "cpu", 1, "/m")


def stats(pairs: int) -> EngineStats:
    return EngineStats(batches=1, failed_batches=0, pairs_scored=pairs, cache_hits=0, cache_misses=pairs,
                       cache_entries=pairs, queue_depth=0, mean_batch_size=float(pairs), model_seconds=0.5)


class Response:
    def __init__(self, outcome: Any) -> None:
        self.outcome, self.cancelled = outcome, False

    def result(self, timeout_s: float) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        self.cancelled = True


class Handle:
    """`handle.score.remote(...)` answers with the next scripted outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes, self.calls = list(outcomes), 0
        self.score = self

    def remote(self, *args: Any) -> Response:
        self.calls += 1
        return Response(self.outcomes.pop(0))


def answer(replica: str, pairs: int = 2) -> ReplicaAnswer:
    return ReplicaAnswer(Scoring([0.9, 0.1], pairs, 0.25), replica, stats(pairs))


def engine(*outcomes: Any) -> tuple[RayEngine, Handle]:
    handle = Handle(*outcomes)
    return RayEngine("reranker-mini-v1", handle, INFO, timeout_s=5.0), handle


def score(e: RayEngine, cancel: CancelToken | None = None) -> Scoring:
    return e.score_counted(Content(text="q"), [Content(text="a"), Content(text="b")], None, cancel)


def test_a_request_whose_replica_died_is_retried_once_on_the_handle() -> None:
    e, handle = engine(ActorDiedError(), answer("host:2"))
    assert score(e).scores == [0.9, 0.1]
    assert (handle.calls, e.retries, e.replicas_seen()) == (2, 1, ["host:2"])


def test_two_deaths_in_a_row_are_an_error() -> None:
    e, handle = engine(ActorDiedError(), ActorDiedError())
    with pytest.raises(RerankerError, match="two replicas of mini-v1 died"):
        score(e)
    assert handle.calls == 2


def test_a_replica_error_is_handed_on_as_our_type_and_not_retried() -> None:
    failure = RayTaskError("score", "traceback", InputError("documents[1]: bad image"))
    e, handle = engine(failure)
    with pytest.raises(InputError, match="bad image"):
        score(e)
    assert handle.calls == 1


def test_a_cancelled_request_is_not_sent_and_reports_the_reason() -> None:
    e, handle = engine(answer("host:1"))
    token = CancelToken()
    token.cancel("deadline")
    with pytest.raises(RequestCancelled, match="deadline"):
        score(e, token)
    assert handle.calls == 0


def test_stats_sum_the_latest_counters_of_every_replica() -> None:
    e, _ = engine(answer("host:1", 2), answer("host:2", 3), answer("host:1", 4))
    for _ in range(3):
        score(e)
    assert e.stats().pairs_scored == 4 + 3 and e.stats().batches == 2
    assert app_name("mini-v1~2") == "reranker-mini-v1-2"
