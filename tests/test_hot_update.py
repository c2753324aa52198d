"""Hot updates through the real service on the mini models, while threads rank continuously.

One service serves the whole module (loading mini takes seconds); each test leaves it with one
stable version serving and nothing in flight, and picks "the other" model directory as its
candidate. The golden set is a small labelled set written into a temp folder, so validation
takes a moment instead of the full example set's ~15 s.
"""
from __future__ import annotations

import gc
import json
import shutil
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import EXAMPLES, MODELS, make_settings
from reranker.clock import SystemClock
from reranker.control.gates import GateConfig
from reranker.errors import Conflict
from reranker.service import RerankService
from reranker.service.types import Caller, RankRequest, RawItem
from reranker.service.views import StatusView

V1, V2 = str(MODELS / "mini-v1"), str(MODELS / "mini-v2")
# Live gates decide quickly and only fail on gross problems: these tests are about the mechanics.
FAST_GATES = GateConfig(latency_ratio=100.0, latency_min_samples=5, error_min_samples=10,
                        max_memory_growth=1.0, check_interval_s=0.2, window_seconds=30.0)
QUERIES = ("a cat", "espresso coffee", "rocket launch", "wall clock")
DOCUMENTS = (
    "Cats are small domesticated carnivorous mammals that purr.",
    "Espresso is brewed by forcing hot water through finely ground coffee.",
    "A rocket launch sends the spacecraft into orbit.",
    "The old clock on the wall ticks every second.",
    "Kittens need warm milk and a quiet place to sleep.",
    "The barista steamed milk for a cappuccino.",
    "Astronauts float inside the space station.",
    "A watchmaker repairs tiny gears.",
    "Bread rises in a warm oven.",
    "The river flows past the old mill.",
)


def write_golden_set(folder: Path) -> Path:
    """A 3-query labelled set (text plus one image) in `folder`; returns the JSON file."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "images" / "chelsea.jpg", folder / "cat.jpg")
    labelled = {
        "name": "tiny", "k": 5,
        "documents": {
            "t_cat": {"text": DOCUMENTS[0]}, "t_coffee": {"text": DOCUMENTS[1]},
            "t_rocket": {"text": DOCUMENTS[2]}, "t_clock": {"text": DOCUMENTS[3]},
            "t_bread": {"text": DOCUMENTS[8]}, "img_cat": {"image": "cat.jpg"},
        },
        "queries": [
            {"id": "cat", "query": {"text": "a cat"}, "relevance": {"t_cat": 3, "img_cat": 3}},
            {"id": "coffee", "query": {"text": "espresso coffee"}, "relevance": {"t_coffee": 3}},
            {"id": "rocket", "query": {"text": "rocket launch"}, "relevance": {"t_rocket": 3}},
        ],
    }
    path = folder / "golden.json"
    path.write_text(json.dumps(labelled), encoding="utf-8")
    return path


def start_service(folder: Path, gates: GateConfig = FAST_GATES, **changes: Any) -> RerankService:
    settings = make_settings(folder / "data", golden_set=write_golden_set(folder / "golden"),
                             rollout_time_scale=1.0, **changes)
    service = RerankService(settings, SystemClock(), "tok", gate_config=gates)
    service.start(wait=True)
    return service


def request(i: int, user: str | None) -> RankRequest:
    """A fresh query text each time, so no answer comes from a score cache (fair latency gates)."""
    return RankRequest(query=RawItem(text=f"{QUERIES[i % len(QUERIES)]} ({user} #{i})"),
                       documents=tuple(RawItem(text=d) for d in DOCUMENTS), caller=Caller(user_key=user))


@dataclass
class Load:
    """Threads that rank continuously, each as its own user; records every answer's version.

    Users 7, 5, 6 and 0 hash to 0.04, 0.37, 0.45 and 0.50: the candidate gets user-7 at 5% and more as it ramps.
    """

    service: RerankService
    threads: int = 8
    pause_s: float = 0.02
    versions: dict[int, list[str]] = field(default_factory=dict)
    slowest_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Load":
        self._workers = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _run(self, n: int) -> None:
        seen = self.versions.setdefault(n, [])
        i = n
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                seen.append(self.service.rank(request(i, f"user-{n}")).version)
                self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            except Exception as exc:  # every failure is a test failure, reported with its type
                self.errors.append(f"user-{n}: {type(exc).__name__}: {exc}")
            i += 1
            time.sleep(self.pause_s)

    def wait_for_answers(self, n: int, timeout_s: float = 60.0) -> None:
        """Wait until the threads got `n` answers: traffic flows before the test acts."""
        deadline = time.monotonic() + timeout_s
        while self.total < n:
            assert time.monotonic() < deadline, f"only {self.total} answers in {timeout_s:.0f} s"
            time.sleep(0.01)

    def settle(self, version: str, timeout_s: float = 30.0) -> None:
        """Wait until every thread's latest answer came from `version`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(seen and seen[-1] == version for seen in self.versions.values()):
                return
            time.sleep(0.05)
        raise AssertionError(f"not every thread moved to {version}: {[s[-3:] for s in self.versions.values()]}")

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.versions.values())


def wait_for(service: RerankService, states: set[str], timeout_s: float = 240.0,
             on_poll: Callable[[StatusView], None] | None = None) -> StatusView:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = service.status()
        if on_poll is not None:
            on_poll(status)
        if status.state in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"rollout never reached {states}; last status: {service.status()}")


def the_other(service: RerankService) -> str:
    return V2 if service.stable_version().startswith("mini-v1") else V1


def engine_refs(service: RerankService, version: str) -> tuple[weakref.ref, weakref.ref]:
    """Weak references to a version's engine and to the model inside it (a test may peek)."""
    with service.registry.acquire(version) as engine:
        return weakref.ref(engine), weakref.ref(engine._model)


def assert_released(refs: tuple[weakref.ref, weakref.ref]) -> None:
    deadline = time.monotonic() + 5
    while any(r() is not None for r in refs) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert refs[0]() is None, "the retired version's engine is still referenced"
    assert refs[1]() is None, "the retired version's model is still referenced"


def assert_serves(service: RerankService, version: str) -> None:
    assert service.rank(request(0, "probe")).version == version
    assert service.traffic().weights == {version: 100.0}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RerankService]:
    started = start_service(tmp_path_factory.mktemp("hot-update"))
    yield started
    started.close()


@pytest.fixture(autouse=True)
def leaves_one_stable_version(service: RerankService) -> Iterator[None]:
    yield
    assert service.updates.is_idle(), f"a test left a rollout in flight: {service.status()}"
    assert service.admission.is_open
    assert len(service.usable_versions()) == 1, service.versions()


def test_full_hot_update_under_load_loses_no_request_and_keeps_users_sticky(service: RerankService) -> None:
    # whichever version serves (the module's tests run in any order), update to the other one
    old, candidate = service.stable_version(), the_other(service)
    new = Path(candidate).name
    assert service.status().light == "green"
    old_refs = engine_refs(service, old)
    polled: list[StatusView] = []
    plan = [{"share": 5, "seconds": 1}, {"share": 50, "seconds": 2, "ramp": True}, {"share": 100}]
    with Load(service) as load:
        load.wait_for_answers(8)
        rollout_id = service.submit_update(candidate, plan=plan, actor="alice")
        final = wait_for(service, {"promoted", "rolled_back", "failed"}, on_poll=polled.append)
        assert final.state == "promoted", final
        load.settle(new)
    assert load.errors == [] and load.total > 50, (load.errors[:5], load.total)
    for user, seen in load.versions.items():
        first_new = seen.index(new)
        assert set(seen[first_new:]) == {new}, f"user-{user} went back to {old} after {new}"
    assert any(seen[0] == old for seen in load.versions.values())
    lights, banners = {s.light for s in polled}, {s.banner for s in polled}
    assert "yellow" in lights and "red" not in lights
    assert any(b.startswith("Model upgrade 2/3") and new in b for b in banners), banners
    status = service.status()
    assert (status.light, status.stable, status.last_outcome) == ("green", new, "promoted")
    assert status.banner == ""
    assert service.registry.get(old).state.value == "retired"
    assert service.registry.get(old).in_flight == 0
    assert_serves(service, new)
    assert_released(old_refs)
    record = service.store.get_rollout(rollout_id)
    assert (record.outcome, record.candidate, record.stable) == ("promoted", new, old)
    assert record.actor == "alice"
    gates = {g.name: g for g in service.store.gate_results(rollout_id)}
    assert gates["golden_new_model"].passed and "latency" in gates
    assert service.store.get_stable().version == new
    assert any(e.action == "hot_update" and e.actor == "alice" and e.outcome == "started"
               for e in service.store.recent_audit())
    kinds = {e.kind for e in service.store.recent_events(rollout_id=rollout_id)}
    assert {"start", "load_ok", "validation_passed", "stage", "promote", "promoted"} <= kinds


def test_second_submit_conflicts_and_cancel_during_load(service: RerankService) -> None:
    stable, candidate = service.stable_version(), the_other(service)
    rollout_id = service.submit_update(candidate, plan="demo", actor="alice")
    with pytest.raises(Conflict, match=r"already loading .*started by alice"):
        service.submit_update(candidate, plan="demo", actor="bob")
    assert service.status().state == "loading" and service.status().light == "yellow"
    service.rollout_command("cancel", actor="bob")
    status = service.status()
    assert (status.state, status.last_outcome, status.light) == ("cancelled", "cancelled", "green")
    loading = Path(candidate).name
    deadline = time.monotonic() + 60
    while service.registry.get(loading).state.value == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    view = service.registry.get(loading)
    assert view.state.value == "failed" and "cancelled" in (view.reason or "")
    assert_serves(service, stable)
    assert service.store.get_rollout(rollout_id).outcome == "cancelled"
    audit = [(e.actor, e.action, e.outcome) for e in service.store.recent_audit(10)]
    assert ("bob", "hot_update", "refused") in audit and ("bob", "cancel", "ok") in audit


def test_pause_freezes_the_share_then_promote_now(service: RerankService) -> None:
    stable, candidate = service.stable_version(), the_other(service)
    plan = [{"share": 5, "seconds": 0.5}, {"share": 50, "seconds": 20, "ramp": True}, {"share": 100}]
    with Load(service, threads=8) as load:  # stage 1 ends only once its live gates have evidence
        rollout_id = service.submit_update(candidate, plan=plan, actor="alice")
        wait_for(service, {"rolling_out"})
        deadline = time.monotonic() + 60
        while service.status().share <= 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        service.rollout_command("pause", actor="alice")
        frozen = service.status()
        assert frozen.state == "paused" and frozen.light == "yellow" and "paused" in frozen.banner
        weights = service.traffic().weights
        time.sleep(1.0)
        assert service.status().share == frozen.share and service.traffic().weights == weights
        service.rollout_command("resume", actor="alice")
        deadline = time.monotonic() + 30
        while service.status().share <= frozen.share:  # the ramp moves on once resumed
            assert time.monotonic() < deadline, "the share did not grow after resume"
            time.sleep(0.05)
        service.rollout_command("promote", actor="alice")
        final = wait_for(service, {"promoted"})
    assert load.errors == [], load.errors[:5]
    new = final.stable
    assert new == Path(candidate).name and final.light == "green"
    assert service.registry.get(stable).state.value == "retired"
    assert_serves(service, new)
    assert service.store.get_rollout(rollout_id).outcome == "promoted"
    actions = [e.action for e in service.store.recent_audit(10) if e.actor == "alice"]
    assert {"pause", "resume", "promote", "hot_update"} <= set(actions)


def test_rollback_now_goes_red_until_acknowledged_and_frees_the_candidate(service: RerankService) -> None:
    stable, candidate = service.stable_version(), the_other(service)
    rollout_id = service.submit_update(candidate, plan=[{"share": 50, "seconds": 60}, {"share": 100}], actor="alice")
    status = wait_for(service, {"rolling_out"})
    candidate_id = status.candidate
    refs = engine_refs(service, candidate_id)
    with Load(service, threads=4) as load:
        load.wait_for_answers(4)
        service.rollout_command("rollback", actor="carol")
        status = wait_for(service, {"rolled_back"})
        load.settle(stable)
    assert load.errors == [], load.errors[:5]
    assert status.light == "red" and "rolled back by carol" in status.banner
    assert "acknowledge" in status.banner
    assert service.registry.get(candidate_id).state.value == "retired"
    assert_serves(service, stable)
    assert_released(refs)
    record = service.store.get_rollout(rollout_id)
    assert (record.outcome, record.reason) == ("rolled_back", "rolled back by carol")
    service.rollout_command("acknowledge", actor="carol")
    status = service.status()
    assert (status.light, status.state, status.banner) == ("green", "idle", "")
    audit = [(e.actor, e.action, e.outcome) for e in service.store.recent_audit(10)]
    assert ("carol", "rollback", "ok") in audit and ("carol", "acknowledge", "ok") in audit


def test_same_model_reload_gets_a_suffixed_id_and_passes_the_identity_gate(service: RerankService) -> None:
    stable = service.stable_version()
    path = str(MODELS / stable.split("~")[0])
    rollout_id = service.submit_update(path, plan=[{"share": 100}], mode="same-model", actor="alice")
    final = wait_for(service, {"promoted", "rolled_back", "failed"})
    assert final.state == "promoted", final
    assert final.stable.startswith(stable.split("~")[0] + "~")
    gate = next(g for g in service.store.gate_results(rollout_id) if g.name == "golden_same_model")
    assert gate.passed and gate.observed is not None and gate.observed <= 0.001
    assert_serves(service, final.stable)


def test_replace_in_place_queues_concurrent_requests_and_none_fails(service: RerankService) -> None:
    stable, candidate = service.stable_version(), the_other(service)
    with Load(service, threads=4, pause_s=0.01) as load:
        load.wait_for_answers(4)
        before = load.total
        rollout_id = service.replacer.start(candidate, "alice")
        assert not service.admission.is_open
        during = service.status()
        assert (during.light, during.state) == ("yellow", "replacing"), during
        with pytest.raises(Conflict, match="already replacing"):
            service.replacer.start(candidate, "bob")
        with pytest.raises(Conflict, match="already replacing"):  # a staged rollout is refused too
            service.submit_update(candidate, plan=[{"share": 100}], actor="carol")
        deadline = time.monotonic() + 90
        while service.store.get_rollout(rollout_id).outcome is None and time.monotonic() < deadline:
            time.sleep(0.05)
        new = Path(candidate).name
        load.settle(new)
    assert service.store.get_rollout(rollout_id).outcome == "promoted"
    assert load.errors == [] and load.total > before, load.errors[:5]
    assert service.admission.queued > 0, "no request waited at the admission gate"
    assert service.registry.get(stable).state.value == "retired"
    assert_serves(service, new)
    assert service.store.get_stable().version == new
    final = service.status()
    assert (final.light, final.state, final.last_outcome) == ("green", "promoted", "promoted"), final
    assert any(e.kind == "replaced" for e in final.events), final.events
    assert any(e.action == "hot_update" and "replace in place" in e.detail for e in service.store.recent_audit(5))
