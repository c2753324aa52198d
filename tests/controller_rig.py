"""Fake collaborators and the Rig around a RolloutController (fake clock, no models), shared by
the controller, evidence and update-manager tests."""
from __future__ import annotations


from dataclasses import dataclass, field
from typing import Sequence


from reranker.clock import FakeClock
from reranker.control.controller import RolloutController
from reranker.control.gates import GateConfig, GateResult
from reranker.control.livestats import LiveStats, PairedWindow, WindowStats
from reranker.control.plans import DEFAULT_PLAN, Mode, Plan
from reranker.control.ports import Event, LoadPhase, LoadStatus
from reranker.control.rollout import RolloutState

S = RolloutState
STABLE, CAND = "mini-v1", "mini-v2"
PASS = GateResult("golden_same_model", 0.0, 0.001, True, "identical")
FAIL = GateResult("golden_same_model", 0.2, 0.001, False, "max |score delta| 0.2")


@dataclass
class FakeLoader:
    log: list
    status: LoadStatus = LoadStatus(LoadPhase.LOADING)
    refuse: Exception | None = None
    cancelled: bool = False

    def start_load(self, path: str) -> None:
        if self.refuse:
            raise self.refuse
        self.log.append(("load", path))
        self.status = LoadStatus(LoadPhase.LOADING)

    def poll_load(self) -> LoadStatus:
        return self.status

    def cancel_load(self) -> None:
        self.cancelled = True


@dataclass
class FakeValidator:
    results: Sequence[GateResult] | None = None
    started: list = field(default_factory=list)
    cancelled: bool = False
    progress: tuple[int, int] = (0, 0)

    def start_validation(self, stable_id: str, candidate_id: str, mode: Mode) -> None:
        self.started.append((stable_id, candidate_id, mode))

    def poll_validation(self) -> Sequence[GateResult] | None:
        return self.results

    def validation_progress(self) -> tuple[int, int]:
        return self.progress

    def cancel_validation(self) -> None:
        self.cancelled = True


@dataclass
class FakeTraffic:
    log: list
    fail_next: int = 0

    def set_candidate_share(self, stable_id: str, candidate_id: str | None, percent: float) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("routing snapshot locked")
        self.log.append(("traffic", stable_id, candidate_id, percent))


@dataclass
class FakeUnloader:
    log: list
    instant: bool = True
    unloaded: set = field(default_factory=set)
    broken: bool = False

    def start_unload(self, version_id: str) -> None:
        self.log.append(("unload", version_id))
        if self.instant:
            self.unloaded.add(version_id)

    def is_unloaded(self, version_id: str) -> bool:
        if self.broken:
            raise OSError("registry unreachable")
        return version_id in self.unloaded


@dataclass
class FakeMemory:
    rss: int = 1_000_000_000

    def rss_bytes(self) -> int:
        return self.rss


@dataclass
class FlakyStats:
    inner: LiveStats
    failures: int = 0

    def window(self, version: str, since: float) -> WindowStats:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("stats exploded")
        return self.inner.window(version, since)

    def pairs(self, stable: str, candidate: str, since: float) -> PairedWindow:
        return self.inner.pairs(stable, candidate, since)


@dataclass
class FakeSink:
    events: list = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)


class Rig:
    def __init__(self, cfg: GateConfig = GateConfig(check_interval_s=1.0, failed_checks_to_rollback=2,
                                                    require_evidence=False)) -> None:
        self.clock = FakeClock(start=1000.0)
        self.log: list = []
        self.loader, self.validator = FakeLoader(self.log), FakeValidator()
        self.traffic, self.unloader = FakeTraffic(self.log), FakeUnloader(self.log)
        self.live, self.memory, self.sink = LiveStats(), FakeMemory(), FakeSink()
        self.stats = FlakyStats(self.live)
        self.ctl = RolloutController(
            stable_id=STABLE, loader=self.loader, validator=self.validator, traffic=self.traffic,
            stats=self.stats, memory=self.memory, unloader=self.unloader, sink=self.sink,
            clock=self.clock, gate_config=cfg,
        )

    def at(self, seconds: float) -> float:
        """Advance the clock to `seconds` after traffic started, tick, and return the candidate share."""
        self.clock.advance(self.t0 + seconds - self.clock.now())
        return self.ctl.tick().share

    def to_traffic(self, plan: Plan = DEFAULT_PLAN) -> None:
        self.validator.results = None
        self.ctl.start("models/mini-v2", plan, Mode.SAME_MODEL, "alice")
        self.loader.status = LoadStatus(LoadPhase.DONE, 1.0, CAND)
        assert self.ctl.tick().state is S.VALIDATING
        self.validator.results = [PASS]
        assert self.ctl.tick().state is S.ROLLING_OUT
        self.t0 = self.clock.now()

    def feed(self, version: str, n: int, latency: float, ok: bool = True) -> None:
        for _ in range(n):
            self.live.record(version, latency, ok, self.clock.now())

    def feed_pairs(self, n: int, stable_s: float, candidate_s: float, ok: bool = True) -> None:
        """Paired replays (what the service's sampler records) and as many live candidate requests."""
        for _ in range(n):
            self.live.record_pair(STABLE, CAND, stable_s, candidate_s, ok, self.clock.now())

    def traffic_calls(self) -> list:
        return [entry[1:] for entry in self.log if entry[0] == "traffic"]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.sink.events]
