"""Hot updates across Ray Serve deployments: 2 replicas per version on a local 2-CPU cluster."""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from tests.test_hot_update import DOCUMENTS, QUERIES, the_other, wait_for
from reranker.service.types import Caller, RankRequest, RawItem
from reranker.errors import InsufficientMemory

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from reranker.engine.ray_serve import RayEngine, app_name  # noqa: E402

PLAN = [{"share": 30, "seconds": 2}, {"share": 100}]


def request(i: int, user: str) -> RankRequest:
    """A fresh 3-document query each time (no score-cache hits), light enough for a busy 2-core box."""
    return RankRequest(query=RawItem(text=f"{QUERIES[i % len(QUERIES)]} ({user} #{i})"),
                       documents=tuple(RawItem(text=d) for d in DOCUMENTS[i % 4: i % 4 + 3]),
                       caller=Caller(user_key=user))


def pinned_slow_request(service: Any, version: str, n: int, errors: list[str]) -> None:
    """20 long documents on `version`: it runs for a while on one replica."""
    documents = tuple(RawItem(text=f"{d} {n}-{i} " * 40) for i, d in enumerate(DOCUMENTS * 2))
    try:
        result = service.rank(RankRequest(query=RawItem(text=f"slow {n} {time.monotonic_ns()}"), documents=documents),
                              pinned_version=version)
        assert len(result.results) == len(documents)
    except Exception as exc:  # a lost request is a test failure
        errors.append(f"slow-{n}: {type(exc).__name__}: {exc}")


class Load:
    """`threads` clients, each its own user, ranking with a pause; every answer's version is kept."""

    def __init__(self, service: Any, threads: int, pause_s: float = 0.1) -> None:
        self.service, self.pause_s = service, pause_s
        self.versions: dict[int, list[str]] = {n: [] for n in range(threads)}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> "Load":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _run(self, n: int) -> None:
        i = n
        while not self.stop.is_set():
            try:
                self.versions[n].append(self.service.rank(request(i, f"user-{n}")).version)
            except Exception as exc:  # every failure is a test failure, reported with its type
                self.errors.append(f"user-{n}: {type(exc).__name__}: {exc}")
            i += 1
            self.stop.wait(self.pause_s)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.versions.values())

    def settle(self, version: str, timeout_s: float = 30.0) -> None:
        wait_until(lambda: all(seen and seen[-1] == version for seen in self.versions.values()),
                   f"every client answered by {version}", timeout_s)


def apps() -> set[str]:
    return set(serve.status().applications)


def engine_of(service: Any, version: str) -> RayEngine:
    with service.registry.acquire(version) as engine:
        assert isinstance(engine, RayEngine)
        return engine


def running_replicas(version: str) -> int:
    status = serve.status().applications.get(app_name(version))
    if status is None:
        return 0
    return sum(n for state, n in status.deployments["replica"].replica_states.items() if str(state).endswith("RUNNING"))


def wait_until(condition: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout_s:.0f} s")
        time.sleep(0.1)


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def test_hot_update_under_8_clients_with_a_replica_killed_mid_rollout(ray_service: Any) -> None:
    """mini-v1 -> mini-v2 (or back) while 8 clients rank; one candidate replica is SIGKILLed at 50%."""
    service = ray_service
    stable, candidate = service.stable_version(), name_of(the_other(service))
    assert app_name(stable) in apps() and running_replicas(stable) == 2
    old = engine_of(service, stable)
    plan = [{"share": 50, "seconds": 4}, {"share": 100}]
    with Load(service, threads=8) as load:
        wait_until(lambda: load.total >= 16, "the clients got answers")
        service.submit_update(the_other(service), plan=plan, actor="alice")
        wait_for(service, {"rolling_out"}, timeout_s=150)
        new = engine_of(service, candidate)
        wait_until(lambda: len(new.replicas_seen()) == 2 and len(old.replicas_seen()) == 2, "every replica answered")
        victim = int(new.replicas_seen()[0].rsplit(":", 1)[1])
        # slow requests pinned to the candidate, so some are running on the victim when it dies
        slow = [threading.Thread(target=pinned_slow_request, args=(service, candidate, n, load.errors))
                for n in range(4)]
        for thread in slow:
            thread.start()
        wait_until(lambda: service.registry.get(candidate).in_flight >= 4, "the slow requests are in flight")
        served = load.total
        wait_until(lambda: load.total >= served + 2, "the replicas took the slow requests")
        os.kill(victim, signal.SIGKILL)
        for thread in slow:
            thread.join(timeout=60)
        wait_until(lambda: load.total > served + 24, "requests went on after the kill")
        final = wait_for(service, {"promoted", "rolled_back", "failed"}, timeout_s=60)
        assert final.state == "promoted", final
        load.settle(candidate)
    assert load.errors == [], load.errors[:5]
    assert new.retries >= 1, "no request was in flight on the killed replica: the test proved nothing"
    assert service.stable_version() == candidate
    assert app_name(stable) not in apps(), "the old version's deployment was not deleted"
    assert service.registry.get(stable).state.value == "retired"
    assert {g.name for g in service.store.gate_results(service.status().rollout_id)} >= {"golden_new_model"}
    wait_until(lambda: running_replicas(candidate) == 2, "Ray Serve restarted the killed replica", 120)
    assert service.rank(request(0, "after")).version == candidate


def test_a_candidate_that_cannot_be_placed_fails_clearly_while_stable_serves(ray_service: Any) -> None:
    service = ray_service
    stable, candidate = service.stable_version(), the_other(service)
    free = ray.available_resources().get("CPU", 0.0)
    hog = ray.util.placement_group([{"CPU": free}])  # another tenant takes every free CPU
    try:
        ray.get(hog.ready(), timeout=30)
        with pytest.raises(InsufficientMemory, match=r"cannot place .*2 replica.*force_replace"):
            service.submit_update(candidate, plan=PLAN, actor="alice")
        # the capacity check can pass and the resources go before the load: the load fails in bounded time
        started = time.monotonic()
        with Load(service, threads=2) as load:
            service.updates.submit(candidate, PLAN, None, "alice")
            final = wait_for(service, {"promoted", "rolled_back", "failed"}, timeout_s=30)
        assert final.state == "failed", final
        assert "cannot be placed" in final.reason and "CPU" in final.reason, final.reason
        assert time.monotonic() - started < 20
        assert load.errors == [] and load.total > 0
        assert service.stable_version() == stable and app_name(name_of(candidate)) not in apps()
        service.rollout_command("acknowledge", actor="alice")
    finally:
        ray.util.remove_placement_group(hog)


def test_replace_in_place_when_the_cluster_cannot_hold_both(ray_service: Any) -> None:
    service = ray_service
    stable, candidate = service.stable_version(), the_other(service)
    wait_until(lambda: ray.available_resources().get("CPU", 0.0) >= 1.0, "the last test's resources were freed")
    hog = ray.util.placement_group([{"CPU": ray.available_resources()["CPU"]}])
    try:
        ray.get(hog.ready(), timeout=30)
        with Load(service, threads=3) as load:
            rollout_id = service.submit_update(candidate, actor="alice", force_replace=True)
            wait_until(lambda: service.store.get_rollout(rollout_id).outcome is not None, "replace finished", 150)
        assert service.store.get_rollout(rollout_id).outcome == "promoted"
        assert load.errors == [], load.errors[:5]
        assert service.stable_version() == name_of(candidate)
        assert apps() & {app_name(stable), app_name(name_of(candidate))} == {app_name(name_of(candidate))}
    finally:
        ray.util.remove_placement_group(hog)
