import threading
import time

import pytest

from reranker.clock import FakeClock
from reranker.control.policy import TrafficPolicy
from reranker.control.registry import Registry, VersionState
from reranker.control.router import RequestAttributes
from reranker.errors import Conflict, InputError, NotFound, NotReady

ATTRS = RequestAttributes()


class FakeEngine:
    def __init__(self, name: str, fail_close: bool = False) -> None:
        self.name = name
        self.closed = False
        self.fail_close = fail_close

    def close(self) -> None:
        if self.fail_close:
            raise RuntimeError("device busy")
        self.closed = True


def registry_with(*versions: str) -> tuple[Registry[FakeEngine], dict[str, FakeEngine], FakeClock]:
    clock = FakeClock()
    reg: Registry[FakeEngine] = Registry(clock)
    engines = {}
    for v in versions:
        reg.add_loading(v)
        engines[v] = FakeEngine(v)
        reg.mark_ready(v, engines[v], info={"id": v})
    return reg, engines, clock


def test_no_snapshot_before_first_swap():
    reg, _, _ = registry_with("v1")
    assert reg.snapshot_or_none() is None
    with pytest.raises(NotReady):
        reg.snapshot()


def test_lifecycle_states_and_generations():
    clock = FakeClock(start=500.0)
    reg: Registry[FakeEngine] = Registry(clock)
    reg.add_loading("v1")
    assert reg.get("v1").state is VersionState.LOADING
    with pytest.raises(InputError, match="'v1'"):
        reg.swap(TrafficPolicy.single("v1"), primary="v1")
    reg.mark_ready("v1", FakeEngine("v1"), info="info-v1")
    view = reg.get("v1")
    assert (view.state, view.info, view.loaded_at, view.in_flight) == (VersionState.READY, "info-v1", 500.0, 0)
    first = reg.swap(TrafficPolicy.single("v1"), primary="v1")
    assert first.generation == 1 and reg.snapshot() is first
    assert reg.get("v1").state is VersionState.SERVING

    reg.add_loading("v2")
    reg.mark_ready("v2", FakeEngine("v2"), info="info-v2")
    second = reg.swap(TrafficPolicy.canary("v1", "v2", 5), primary="v1")
    assert second.generation == 2
    assert {v.id: v.state for v in reg.list()} == {"v1": VersionState.SERVING, "v2": VersionState.SERVING}
    reg.swap(TrafficPolicy.single("v2"), primary="v2")
    assert {v.id: v.state for v in reg.list()} == {"v1": VersionState.READY, "v2": VersionState.SERVING}
    assert reg.snapshot().generation == 3


def test_swap_refuses_bad_policy_whole_and_keeps_the_old_snapshot():
    reg, _, _ = registry_with("v1", "v2")
    old = reg.swap(TrafficPolicy.single("v1"), primary="v1")
    with pytest.raises(InputError, match="'v9'"):
        reg.swap(TrafficPolicy.canary("v1", "v9", 5), primary="v1")
    with pytest.raises(InputError, match="primary version 'v9'"):
        reg.swap(TrafficPolicy.single("v1"), primary="v9")
    assert reg.snapshot() is old
    assert reg.get("v2").state is VersionState.READY


def test_add_mark_failed_and_conflicts():
    reg, _, _ = registry_with("v1")
    with pytest.raises(Conflict, match="'v1' is already ready"):
        reg.add_loading("v1")
    reg.add_loading("bad")
    reg.mark_failed("bad", "NaN scores in float16")
    assert (reg.get("bad").state, reg.get("bad").reason) == (VersionState.FAILED, "NaN scores in float16")
    with pytest.raises(Conflict, match="cannot mark ready version 'bad': it is failed"):
        reg.mark_ready("bad", FakeEngine("bad"), info=None)
    reg.add_loading("bad")  # a failed id may be loaded again
    assert reg.get("bad").state is VersionState.LOADING
    with pytest.raises(NotFound, match="'nope'"):
        reg.get("nope")
    with pytest.raises(NotFound, match="'nope'"):
        with reg.acquire("nope"):
            pass
    with pytest.raises(NotReady, match="'bad' is loading"):
        with reg.acquire("bad"):
            pass


def test_acquire_counts_in_flight_and_yields_the_engine():
    reg, engines, _ = registry_with("v1")
    reg.swap(TrafficPolicy.single("v1"), primary="v1")
    with reg.acquire("v1") as engine:
        assert engine is engines["v1"]
        with reg.acquire_routed("alice", ATTRS, 0.3) as lease:
            assert lease.engine is engines["v1"] and lease.route.version == "v1" and lease.generation == 1
            assert reg.get("v1").in_flight == 2
    assert reg.get("v1").in_flight == 0
    with pytest.raises(ValueError):
        with reg.acquire("v1"):
            raise ValueError("request failed")
    assert reg.get("v1").in_flight == 0


def test_drain_refuses_a_version_that_still_gets_traffic():
    reg, _, _ = registry_with("v1", "v2", "v3")
    reg.swap(TrafficPolicy.from_dict({"weights": {"v1": 100}, "shadow": {"version": "v2"}}), primary="v1")
    for version in ("v1", "v2"):
        with pytest.raises(Conflict, match=f"'{version}' still receives traffic"):
            reg.drain_and_unload(version, timeout_s=1)
    assert reg.drain_and_unload("v3", timeout_s=1) is True
    assert reg.get("v3").state is VersionState.RETIRED


def test_request_started_on_v1_finishes_on_v1_and_drain_waits_for_it():
    reg, engines, _ = registry_with("v1", "v2")
    reg.swap(TrafficPolicy.single("v1"), primary="v1")
    acquired, release = threading.Event(), threading.Event()
    served_by: list[str] = []

    def slow_request() -> None:
        with reg.acquire_routed("alice", ATTRS, 0.5) as lease:
            acquired.set()
            release.wait(5)
            served_by.append(lease.engine.name)

    request = threading.Thread(target=slow_request)
    request.start()
    assert acquired.wait(5)
    reg.swap(TrafficPolicy.single("v2"), primary="v2")
    drained: list[bool] = []
    drainer = threading.Thread(target=lambda: drained.append(reg.drain_and_unload("v1", timeout_s=5)))
    drainer.start()
    deadline = time.monotonic() + 5
    while reg.get("v1").state is not VersionState.DRAINING and time.monotonic() < deadline:
        time.sleep(0.005)
    assert reg.get("v1").state is VersionState.DRAINING
    assert reg.get("v1").in_flight == 1 and not engines["v1"].closed and drainer.is_alive()
    with pytest.raises(NotReady, match="'v1' is draining"):
        with reg.acquire("v1"):
            pass
    with reg.acquire_routed("bob", ATTRS, 0.5) as lease:
        assert lease.route.version == "v2"

    release.set()
    request.join(5)
    drainer.join(5)
    assert served_by == ["v1"] and drained == [True]
    assert engines["v1"].closed and not engines["v2"].closed
    view = reg.get("v1")
    assert (view.state, view.in_flight) == (VersionState.RETIRED, 0)
    assert reg._entries["v1"].engine is None  # the registry no longer keeps the model alive


def test_drain_timeout_returns_false_and_can_be_retried():
    reg, engines, _ = registry_with("v1", "v2")
    reg.swap(TrafficPolicy.single("v2"), primary="v2")
    with reg.acquire("v1"):
        assert reg.drain_and_unload("v1", timeout_s=0.05) is False
        assert reg.get("v1").state is VersionState.DRAINING and not engines["v1"].closed
    assert reg.drain_and_unload("v1", timeout_s=1) is True
    assert engines["v1"].closed
    with pytest.raises(Conflict, match="it is retired"):
        reg.drain_and_unload("v1", timeout_s=1)


def test_drain_with_failure_reason_and_close_errors_end_failed():
    reg, _, _ = registry_with("v1", "v2")
    reg.add_loading("v3")
    reg.mark_ready("v3", FakeEngine("v3", fail_close=True), info=None)
    reg.swap(TrafficPolicy.single("v1"), primary="v1")
    assert reg.drain_and_unload("v2", timeout_s=1, failure="golden set: score delta 0.2") is True
    assert (reg.get("v2").state, reg.get("v2").reason) == (VersionState.FAILED, "golden set: score delta 0.2")
    assert reg.drain_and_unload("v3", timeout_s=1) is True
    assert (reg.get("v3").state, reg.get("v3").reason) == (VersionState.FAILED, "close failed: device busy")


def test_routed_acquire_retries_on_the_new_snapshot_when_its_version_drained():
    reg, _, _ = registry_with("v1", "v2")
    stale = reg.swap(TrafficPolicy.single("v1"), primary="v1")
    reg.swap(TrafficPolicy.single("v2"), primary="v2")
    assert reg.drain_and_unload("v1", timeout_s=1)
    reads = iter([stale])
    real_snapshot = reg.snapshot
    reg.snapshot = lambda: next(reads, None) or real_snapshot()  # type: ignore[method-assign]
    with reg.acquire_routed("alice", ATTRS, 0.5) as lease:
        assert (lease.route.version, lease.generation) == ("v2", 2)


def test_no_request_fails_while_traffic_moves_and_the_old_version_drains():
    reg, engines, _ = registry_with("v1", "v2")
    reg.swap(TrafficPolicy.single("v1"), primary="v1")
    stop = threading.Event()
    failures: list[Exception] = []
    served: list[str] = []

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with reg.acquire_routed(f"user-{n}-{i}", ATTRS, 0.5) as lease:
                    assert not lease.engine.closed
                    served.append(lease.engine.name)
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                failures.append(exc)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in clients:
        t.start()
    for share in (5, 25, 50, 100):
        reg.swap(TrafficPolicy.canary("v1", "v2", share), primary="v1")
        time.sleep(0.02)
    reg.swap(TrafficPolicy.single("v2"), primary="v2")
    assert reg.drain_and_unload("v1", timeout_s=5)
    time.sleep(0.02)
    stop.set()
    for t in clients:
        t.join(5)
    assert failures == []
    assert {"v1", "v2"} <= set(served) and engines["v1"].closed
    assert reg.get("v1").in_flight == 0 and reg.get("v2").in_flight == 0
