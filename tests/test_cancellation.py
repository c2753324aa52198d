"""Cancellation and admission (issue 8, item 4) without a server: the work pool refuses past its
queue with a Retry-After, drops cancelled work that has not started, and the engine drops the
queued pairs of a cancelled request without scoring them."""
from __future__ import annotations

import threading
import time

import pytest

from reranker.cancel import DEADLINE, DISCONNECTED, CancelToken
from reranker.clock import FakeClock
from reranker.content import Content
from reranker.errors import Overloaded, RequestCancelled
from reranker.service.workpool import WorkPool
from tests.test_engine import FakeReranker, docs, make_engine


def test_pool_refuses_past_workers_plus_queue_with_retry_after() -> None:
    pool = WorkPool(workers=1, max_queue=1, clock=FakeClock())
    release = threading.Event()
    running = pool.submit(lambda token: release.wait(5))
    queued = pool.submit(lambda token: "ran")
    with pytest.raises(Overloaded) as refused:
        pool.submit(lambda token: "never")
    assert refused.value.status_code == 429
    assert refused.value.retry_after_s >= 1
    assert pool.stats().refused == 1
    release.set()
    assert running.future.result(5) is True
    assert queued.future.result(5) == "ran"
    pool.close()


def test_cancelled_queued_work_never_runs_and_frees_its_place() -> None:
    pool = WorkPool(workers=1, max_queue=1, clock=FakeClock())
    release, ran = threading.Event(), threading.Event()
    busy = pool.submit(lambda token: release.wait(5))
    busy.started.wait(5)
    queued = pool.submit(lambda token: ran.set())
    assert pool.cancel(queued, DISCONNECTED) is True
    assert queued.cancel_token.reason == DISCONNECTED
    pool.submit(lambda token: None)  # the cancelled one's place is free again
    release.set()
    busy.future.result(5)
    pool.close()
    assert not ran.is_set()


def test_cancelling_running_work_sets_its_token() -> None:
    pool = WorkPool(workers=1, max_queue=0, clock=FakeClock())
    seen = threading.Event()

    def work(token: CancelToken) -> str:
        token.on_cancel(seen.set)
        seen.wait(5)
        token.check("work")
        return "finished"

    item = pool.submit(work)
    item.started.wait(5)
    assert pool.cancel(item, DEADLINE) is False  # already running: stopped by its token
    with pytest.raises(RequestCancelled) as stopped:
        item.future.result(5)
    assert stopped.value.status_code == 504
    pool.close()


def test_engine_drops_the_queued_pairs_of_a_cancelled_request() -> None:
    gate = threading.Event()
    model = FakeReranker(gate=gate)
    engine = make_engine(model, batch_wait_ms=0, max_batch_pairs=2)
    token = CancelToken()
    outcome: list[BaseException] = []

    def rank() -> None:
        try:
            engine.score_counted(Content(text="q"), docs(*[f"doc {i}" for i in range(10)]), None, token)
        except RequestCancelled as exc:
            outcome.append(exc)

    caller = threading.Thread(target=rank)
    caller.start()
    deadline = time.monotonic() + 10
    while engine.stats().queue_depth != 8 and time.monotonic() < deadline:  # first batch taken
        time.sleep(0.01)
    token.cancel(DEADLINE)
    caller.join(5)
    assert outcome and outcome[0].unscored_pairs >= 8  # type: ignore[attr-defined]
    gate.set()
    engine.score(Content(text="x"), docs("after"))  # the worker goes on
    stats = engine.stats()
    assert stats.pairs_scored == 2 + 1  # the batch already in the model, then "after"
    assert stats.dropped_pairs == 8
    engine.close()


def test_full_pool_refuses_before_the_body_is_read() -> None:
    """The early 429: the pool is full, so the rank route's body is never read."""
    import asyncio

    from reranker.api_work import EarlyRefusalMiddleware

    pool = WorkPool(workers=1, max_queue=0, clock=FakeClock())
    release = threading.Event()
    pool.submit(lambda token: release.wait(5))
    sent: list[dict] = []
    refused: list[int] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        raise AssertionError("the app must not run")

    async def receive() -> dict:
        raise AssertionError("the body must not be read")

    async def send(message: dict) -> None:
        sent.append(message)

    middleware = EarlyRefusalMiddleware(app, pool, lambda: refused.append(1))
    asyncio.run(middleware({"type": "http", "method": "POST", "path": "/v1/rerank"}, receive, send))
    assert sent[0]["status"] == 429
    assert int(dict(sent[0]["headers"])[b"retry-after"]) >= 1
    assert refused == [1]
    release.set()
    pool.close()
