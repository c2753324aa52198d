"""Engine: batching, ordering, caching, failure isolation, warm-up and close.

Most tests use a small fake Reranker (the engine is pure batching logic); the last one runs the
real mini model when its backend is present.
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import pytest

from reranker.clock import FakeClock, SystemClock
from reranker.content import Content, Pair
from reranker.engine import Engine, EngineState
from reranker.errors import ModelLoadError, NotReady, RerankerError
from reranker.models.base import DEFAULT_INSTRUCTION, ModelInfo
from reranker.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]


def expected(query: str, document: str) -> float:
    """The fake model's score: a stable function of both texts, in [0, 1)."""
    digest = hashlib.sha256(f"{query}\0{document}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class FakeReranker:
    """Scores text pairs by hashing; "boom" in a document raises, "nan" returns NaN."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.entered: list[int] = []  # batch sizes that reached score(), before the gate opened
        self.closed = False
        self._delay = delay
        self._gate = gate
        self.on_score: Callable[[], None] = lambda: None
        self._info = ModelInfo("fake-v1", "fake", "1", "fake", "float32", "cpu", 0, "/nowhere")

    @property
    def info(self) -> ModelInfo:
        return self._info

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        self.entered.append(len(pairs))
        if self._gate is not None:
            self._gate.wait(5)
        self.calls.append(len(pairs))
        self.on_score()
        time.sleep(self._delay)
        out = []
        for pair in pairs:
            text = pair.document.text or ""
            if "boom" in text:
                raise ValueError(f"cannot score {text!r}")
            out.append(float("nan") if "nan" in text else expected(pair.query.text or "", text))
        return out

    def close(self) -> None:
        self.closed = True


def make_engine(model: FakeReranker, **settings: float) -> Engine:
    return Engine(model, EngineSettings(**settings), SystemClock())


def docs(*texts: str) -> list[Content]:
    return [Content(text=t) for t in texts]


def wait_until_submitted(engine: Engine, model: FakeReranker, pairs: int, timeout_s: float = 10.0) -> None:
    """Block until `pairs` pairs are either queued or inside the (gated) model: every caller is in."""
    deadline = time.monotonic() + timeout_s
    while engine.stats().queue_depth + sum(model.entered) < pairs:
        assert time.monotonic() < deadline, f"only {engine.stats().queue_depth + sum(model.entered)} of {pairs} pairs arrived"
        time.sleep(0.005)


def test_scores_come_back_in_document_order() -> None:
    engine = make_engine(FakeReranker(), batch_wait_ms=0)
    texts = [f"doc {i}" for i in range(7)]
    assert engine.score(Content(text="q"), docs(*texts)) == [expected("q", t) for t in texts]
    assert engine.score(Content(text="q"), []) == []
    engine.close()


def test_big_request_is_split_into_batches() -> None:
    model = FakeReranker()
    engine = make_engine(model, max_batch_pairs=16, batch_wait_ms=0)
    texts = [f"doc {i}" for i in range(40)]
    assert engine.score(Content(text="q"), docs(*texts)) == [expected("q", t) for t in texts]
    assert model.calls == [16, 16, 8]
    engine.close()


def test_concurrent_callers_get_their_own_results_and_share_batches() -> None:
    gate = threading.Event()
    model = FakeReranker(gate=gate)
    engine = make_engine(model, max_batch_pairs=64, batch_wait_ms=200)
    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def caller(n: int) -> None:
        try:
            start.wait()
            results[n] = engine.score(Content(text=f"query {n}"), docs(*(f"d{n}-{i}" for i in range(5))))
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    wait_until_submitted(engine, model, 40)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert not errors
    for n in range(8):
        assert results[n] == [expected(f"query {n}", f"d{n}-{i}") for i in range(5)]
    assert sum(model.calls) == 40
    assert len(model.calls) < 8 and max(model.calls) > 5  # requests were merged
    assert engine.stats().mean_batch_size > 5
    engine.close()


def test_repeated_pairs_hit_the_cache() -> None:
    model = FakeReranker()
    engine = make_engine(model, batch_wait_ms=0)
    first = engine.score(Content(text="q"), docs("a", "b", "c"))
    assert engine.score(Content(text="q"), docs("c", "a", "b")) == [first[2], first[0], first[1]]
    assert model.calls == [3]
    stats = engine.stats()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_entries) == (3, 3, 3)
    # the default instruction and no instruction are the same key; another instruction is not
    engine.score(Content(text="q"), docs("a"), DEFAULT_INSTRUCTION)
    assert model.calls == [3]
    engine.score(Content(text="q"), docs("a"), "Find images")
    assert model.calls == [3, 1]
    engine.close()


def test_score_counted_says_how_many_pairs_the_model_computed_and_its_time() -> None:
    clock = FakeClock()
    model = FakeReranker()
    model.on_score = lambda: clock.advance(0.25)
    engine = Engine(model, EngineSettings(batch_wait_ms=0), clock)
    first = engine.score_counted(Content(text="q"), docs("a", "b", "a"))
    assert (first.computed, first.model_seconds) == (2, 0.25)
    again = engine.score_counted(Content(text="q"), docs("b", "a"))
    assert (again.computed, again.model_seconds, again.scores) == (0, 0.0, [first.scores[1], first.scores[0]])
    engine.close()


def test_duplicate_documents_are_scored_once() -> None:
    model = FakeReranker()
    engine = make_engine(model, batch_wait_ms=0)
    scores = engine.score(Content(text="q"), docs("same", "other", "same"))
    assert scores[0] == scores[2] == expected("q", "same")
    assert model.calls == [2]
    engine.close()


def test_cache_can_be_disabled() -> None:
    model = FakeReranker()
    engine = make_engine(model, batch_wait_ms=0, cache_entries=0)
    engine.score(Content(text="q"), docs("a"))
    engine.score(Content(text="q"), docs("a"))
    assert model.calls == [1, 1]
    engine.close()


def test_model_exception_fails_only_the_request_that_caused_it() -> None:
    gate = threading.Event()
    model = FakeReranker(gate=gate)
    engine = make_engine(model, max_batch_pairs=64, batch_wait_ms=200)
    outcome: dict[str, object] = {}

    def caller(name: str, texts: list[str]) -> None:
        try:
            outcome[name] = engine.score(Content(text="q"), docs(*texts))
        except RerankerError as exc:
            outcome[name] = exc

    threads = [
        threading.Thread(target=caller, args=("good", ["a", "b"])),
        threading.Thread(target=caller, args=("bad", ["c", "boom"])),
    ]
    for thread in threads:
        thread.start()
    wait_until_submitted(engine, model, 4)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert outcome["good"] == [expected("q", "a"), expected("q", "b")]
    error = outcome["bad"]
    assert isinstance(error, RerankerError) and "ValueError" in str(error) and "fake-v1" in str(error)
    assert model.calls[0] == 4  # one merged batch first, then each request retried alone
    # the worker is still alive
    assert engine.score(Content(text="q"), docs("later")) == [expected("q", "later")]
    assert engine.stats().failed_batches == 2
    engine.close()


def test_non_finite_scores_are_refused_and_not_cached() -> None:
    model = FakeReranker()
    engine = make_engine(model, batch_wait_ms=0)
    with pytest.raises(RerankerError, match=r"non-finite score \(nan\) for documents\[1\]"):
        engine.score(Content(text="q"), docs("fine", "nan"))
    assert engine.stats().cache_entries == 1  # only "fine"
    with pytest.raises(RerankerError, match="non-finite"):
        engine.score(Content(text="q"), docs("nan"))
    engine.close()


def test_warm_up_marks_ready_and_a_broken_model_fails_it() -> None:
    engine = make_engine(FakeReranker(), batch_wait_ms=0)
    assert engine.state is EngineState.STARTING and not engine.ready
    engine.warm_up()
    assert engine.ready
    engine.close()

    class BrokenModel(FakeReranker):
        def score(self, pairs: Sequence[Pair]) -> list[float]:
            return [float("nan")] * len(pairs)

    broken = make_engine(BrokenModel(), batch_wait_ms=0)
    with pytest.raises(ModelLoadError, match="warm-up of model fake-v1 failed.*non-finite"):
        broken.warm_up()
    assert not broken.ready
    broken.close()


def test_close_fails_waiting_requests_and_closes_the_model() -> None:
    gate = threading.Event()
    model = FakeReranker(gate=gate)
    engine = make_engine(model, max_batch_pairs=2, batch_wait_ms=0)
    outcome: list[object] = []

    def caller() -> None:
        try:
            outcome.append(engine.score(Content(text="q"), docs("a", "b", "c", "d", "e", "f")))
        except RerankerError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    deadline = time.monotonic() + 5
    while engine.stats().queue_depth != 4 and time.monotonic() < deadline:
        time.sleep(0.01)  # the first batch of 2 is in the model, 4 pairs wait
    closer = threading.Thread(target=engine.close)
    closer.start()
    while engine.state is not EngineState.CLOSED and time.monotonic() < deadline + 5:
        time.sleep(0.005)  # close() has begun: new work is refused, waiting work fails
    gate.set()
    closer.join(5)
    thread.join(5)
    assert isinstance(outcome[0], NotReady) and "closed" in str(outcome[0])
    assert model.closed and engine.state is EngineState.CLOSED
    with pytest.raises(NotReady, match="closed"):
        engine.score(Content(text="q"), docs("a"))
    engine.close()  # idempotent


def test_fake_clock_is_accepted() -> None:
    engine = Engine(FakeReranker(), EngineSettings(batch_wait_ms=1), FakeClock())
    assert engine.score(Content(text="q"), docs("x")) == [expected("q", "x")]
    assert engine.stats().model_seconds == 0.0  # the fake clock never moved
    engine.close()


def test_real_mini_model_through_the_engine() -> None:
    from PIL import Image

    from reranker.content import ImageItem
    from reranker.models.base import Placement
    from reranker.models.mini import BACKEND

    model = BACKEND.load(ROOT / "models" / "mini-v1", Placement(device="cpu", dtype="float32"), "mini-v1")
    engine = Engine(model, EngineSettings(max_batch_pairs=4, batch_wait_ms=20), SystemClock())
    engine.warm_up()
    assert engine.ready and engine.info.backend == "mini"
    query = Content(text="a dog playing in the park")
    documents = [
        Content(text="quarterly tax report for the finance department"),
        Content(text="a puppy runs across the grass in the park"),
        Content(images=(ImageItem(Image.new("RGB", (64, 64), (200, 30, 30)), digest="f" * 64),)),
    ]
    scores = engine.score(query, documents)
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[1] > scores[0]
    # concurrent callers get exactly what a lone caller gets (from the model or the cache)
    fresh = [Content(text=f"dogs and parks, note {i}") for i in range(6)]
    alone = model.score([Pair(query, doc) for doc in fresh])
    out: dict[int, list[float]] = {}
    threads = [
        threading.Thread(target=lambda n=n: out.__setitem__(n, engine.score(query, fresh[n * 2 : n * 2 + 2])))
        for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [s for n in range(3) for s in out[n]] == pytest.approx(alone, abs=1e-6)
    engine.close()
