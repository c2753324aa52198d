"""The background lane: golden-set chunks and probes never share a batch with live requests,
run in the same deterministic chunks on both versions, and yield to live batches."""
from __future__ import annotations

import threading
import time
from typing import Sequence

import pytest

from reranker.clock import SystemClock
from reranker.content import Content, Pair
from reranker.control.policy import TrafficPolicy
from reranker.control.registry import Registry
from reranker.engine import Engine
from reranker.engine.devicegate import DeviceGate
from reranker.models.base import ModelInfo
from reranker.service.golden import CHUNK_PAIRS, DecodedSet
from reranker.settings import EngineSettings
from tests.test_engine import expected


class BatchSensitive:
    """Like bf16 on a GPU: a pair's score moves a little with the size of the batch it ran in."""

    def __init__(self, version: str, delay_s: float = 0.002) -> None:
        self._info = ModelInfo(version, "fake", "1", "fake", "bfloat16", "cpu", 0, "/nowhere")
        self.delay_s = delay_s
        self.batches: list[list[str]] = []

    @property
    def info(self) -> ModelInfo:
        return self._info

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        self.batches.append([p.document.text or "" for p in pairs])
        time.sleep(self.delay_s)
        return [expected(p.query.text or "", p.document.text or "") + 1e-3 * len(pairs) for p in pairs]

    def close(self) -> None:
        pass


def golden() -> DecodedSet:
    return DecodedSet(
        queries=[Content(text=f"query {q}") for q in range(3)],
        documents=[Content(text=f"golden doc {d}") for d in range(5)],
        grades=[[int(d == q) for d in range(5)] for q in range(3)],
        k=5,
    )


def test_same_weights_give_identical_golden_scores_while_live_traffic_runs() -> None:
    gate = DeviceGate()
    registry: Registry[Engine] = Registry(SystemClock())
    models = {v: BatchSensitive(v) for v in ("v1", "v1~2")}
    for version, model in models.items():
        registry.add_loading(version)
        registry.mark_ready(version, Engine(model, EngineSettings(max_batch_pairs=16, batch_wait_ms=2),
                                            SystemClock(), gate), None)
    registry.swap(TrafficPolicy.single("v1"), "v1")
    stop = threading.Event()

    def live(n: int) -> None:
        i = 0
        while not stop.is_set():
            with registry.acquire("v1") as engine:
                engine.score(Content(text=f"live {n}"), [Content(text=f"live doc {n}-{i}-{j}") for j in range(3)])
            i += 1

    threads = [threading.Thread(target=live, args=(n,), daemon=True) for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        progress: list[tuple[int, int]] = []
        stable, candidate = golden().paired_scores(registry, ("v1", "v1~2"), lambda *p: progress.append(p))
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    deltas = [abs(a - b) for row_a, row_b in zip(stable, candidate) for a, b in zip(row_a, row_b)]
    assert len(deltas) == 15 and max(deltas) == 0.0
    assert progress[0] == (0, 30) and progress[-1] == (30, 30)  # every pair, both versions, counted
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    for batch in models["v1"].batches:  # golden pairs never shared a batch with live pairs
        kinds = {text.startswith("golden") for text in batch}
        assert len(kinds) == 1, batch
        if kinds == {True}:
            assert len(batch) <= CHUNK_PAIRS
    golden_batches = [b for b in models["v1"].batches if b[0].startswith("golden")]
    assert golden_batches == models["v1~2"].batches  # the same chunks, in the same order


class StepClock:
    """Each live or background section advances it by its own duration (deterministic shares)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("gate_share, work_share", [(0.25, None), (0.1, 0.25)])
def test_background_work_takes_its_share_of_device_time_and_is_never_starved(gate_share, work_share) -> None:
    """While live batches wait, background chunks get their share of the device time (the gate's,
    or the one the work asks for): at 0.25, with chunks as long as a live batch, one chunk after
    every 3 live batches; never starved."""
    clock = StepClock()
    gate = DeviceGate(share=gate_share, clock=clock)
    order: list[str] = []
    hold = threading.Event()
    hold_taken = threading.Event()

    def section(kind: str, name: str, seconds: float = 1.0) -> None:
        with (gate.live() if kind == "live" else gate.background(work_share)):
            if name == "live-0":
                hold_taken.set()
                hold.wait(5)
            clock.now += seconds
            order.append(name)

    holder = threading.Thread(target=section, args=("live", "live-0"))
    holder.start()
    assert hold_taken.wait(5)
    threads = [threading.Thread(target=section, args=("background", f"bg-{i}")) for i in range(3)]
    for thread in threads:
        thread.start()
    lives = [threading.Thread(target=section, args=("live", f"live-{i}")) for i in range(1, 10)]
    for thread in lives:
        thread.start()
    deadline = time.monotonic() + 5
    while (gate._live_waiting, gate._background_waiting) != (9, 3):  # everyone queued behind live-0
        assert time.monotonic() < deadline
        time.sleep(0.002)
    hold.set()
    for thread in [holder, *threads, *lives]:
        thread.join(5)
    assert len(order) == 13
    backgrounds = [position for position, name in enumerate(order) if name.startswith("bg")]
    # the first chunk cuts in at once (no debt yet), then one whenever 3 live seconds paid it back
    assert backgrounds == [1, 5, 9], order


def test_background_work_runs_freely_when_no_live_batch_waits() -> None:
    clock = StepClock()
    gate = DeviceGate(share=0.1, clock=clock)
    for _ in range(5):
        with gate.background():
            clock.now += 1.0
    assert gate._debt == 0  # noqa: SLF001  (nothing is charged while the device is otherwise idle)


def test_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="share"):
        DeviceGate(share=1.0)


def test_a_second_version_gets_the_device_while_another_keeps_it_busy() -> None:
    """A busy version's batch thread releases the gate and asks again at once; a candidate warming
    up on the same device must still get its turn (it waited for ever before live was FIFO)."""
    gate = DeviceGate()
    stop = threading.Event()
    busy_batches = 0

    def busy() -> None:
        nonlocal busy_batches
        while not stop.is_set():
            with gate.live():
                busy_batches += 1
                time.sleep(0.001)

    hammer = threading.Thread(target=busy, daemon=True)
    hammer.start()
    try:
        deadline = time.monotonic() + 5
        while busy_batches < 20:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        entered = threading.Event()

        def other() -> None:
            with gate.live():
                entered.set()

        for _ in range(20):
            entered.clear()
            threading.Thread(target=other, daemon=True).start()
            assert entered.wait(5), "the second version never got the device"
    finally:
        stop.set()
        hammer.join(5)


def test_an_interrupted_live_waiter_does_not_block_the_ones_behind_it() -> None:
    gate = DeviceGate()
    gate._busy = True  # someone holds the device
    gate._next_ticket = 1  # ... and ticket 0 is theirs
    with gate._cond:
        gate._abandoned.add(0)
        gate._skip_abandoned()
    gate._busy = False
    with gate.live():
        pass
    assert gate._serving_ticket == 2


def test_isolated_scoring_bypasses_the_cache() -> None:
    model = BatchSensitive("v1", delay_s=0.0)
    engine = Engine(model, EngineSettings(batch_wait_ms=0), SystemClock())
    pairs = [Pair(Content(text="q"), Content(text=f"golden {i}")) for i in range(3)]
    first, seconds = engine.score_isolated(pairs)
    again, _ = engine.score_isolated(pairs)
    assert first == again and len(model.batches) == 2 and seconds >= 0.0
    assert engine.stats().cache_entries == 0
    engine.close()


def test_mini_isolated_scores_do_not_depend_on_what_its_caches_hold() -> None:
    """The model's own caches (text embeddings computed in other batches) must not leak into a
    golden-set comparison: two copies of the same weights, one with a busy past, agree exactly."""
    from pathlib import Path

    from reranker.models.base import Placement
    from reranker.models.mini import BACKEND

    root = Path(__file__).resolve().parents[1] / "models" / "mini-v1"
    busy = BACKEND.load(root, Placement(device="cpu", dtype="float32"), "busy")
    fresh = BACKEND.load(root, Placement(device="cpu", dtype="float32"), "fresh")
    chunk = [Pair(Content(text="a cat on a sofa"), Content(text=t)) for t in
             ("Cats are small domesticated mammals that purr.", "A rocket launch.", "Espresso coffee.", "Bread.")]
    for n in range(3):  # the same texts embedded inside other batches: different padding
        busy.score([Pair(Content(text=f"unrelated query {n} " * (n + 1)), p.document) for p in chunk[n:]])
    assert busy.score_isolated(chunk) == fresh.score_isolated(chunk)
    assert len(busy.text_cache) > 0 and busy.score_isolated(chunk) == busy.score_isolated(chunk)
    # one run's session: the second chunk reuses what the first embedded, the same on both copies
    runs = [{}, {}]
    for half in (chunk[:2], chunk[2:], chunk):
        assert busy.score_isolated(half, runs[0]) == fresh.score_isolated(half, runs[1])


class Preparing(BatchSensitive):
    """A model with a CPU part (prepare) and a device part (score_prepared), like Qwen3-VL's."""

    def __init__(self, version: str, gate: DeviceGate) -> None:
        super().__init__(version, delay_s=0.0)
        self.gate = gate
        self.prepared_while_busy: list[bool] = []

    def prepare(self, pairs: Sequence[Pair]) -> list[Pair]:
        self.prepared_while_busy.append(self.gate._busy)  # noqa: SLF001
        return list(pairs)

    def score_prepared(self, prepared: list[Pair]) -> list[float]:
        assert self.gate._busy  # noqa: SLF001  the device pass holds the gate
        return self.score(prepared)


def test_isolated_work_is_prepared_outside_the_device_gate() -> None:
    """On a busy GPU host the CPU part of a golden chunk (prompts, media) took seconds under request
    threads; inside the gate it was charged as device time and validation crawled (4 pairs/s)."""
    gate = DeviceGate()
    model = Preparing("v1", gate)
    engine = Engine(model, EngineSettings(batch_wait_ms=0), SystemClock(), gate)
    pairs = [Pair(Content(text="q"), Content(text=f"golden {i}")) for i in range(3)]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.live():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(engine.score_isolated(pairs)))
    worker.start()
    deadline = time.monotonic() + 5
    while not model.prepared_while_busy and time.monotonic() < deadline:
        time.sleep(0.005)
    assert model.prepared_while_busy == [True]  # prepared while the device was held by a live batch
    assert model.batches == []  # ... but not scored until it was free
    release.set()
    holder.join(5)
    worker.join(5)
    scores, seconds = result[0]
    assert len(scores) == 3 and model.batches == [[f"golden {i}" for i in range(3)]] and seconds >= 0.0
    engine.close()
