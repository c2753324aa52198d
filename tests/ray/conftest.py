"""A local Ray cluster (2 logical CPUs) and one service on it with 2 mini replicas per version.

Every test here is marked `ray` (select with `-m ray`, skip with `-m "not ray"`) and runs under
its own deadline: a SIGALRM timer fails the test instead of letting a stuck cluster hang the run.
The cluster and the service are shared by the module's tests (starting Ray and loading
replicas costs most of the time); each test starts from whatever version is stable.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import make_settings
from tests.test_hot_update import FAST_GATES, write_golden_set

RAY_CPUS = 2
REPLICAS = 2
SETUP_BUDGET_S = 240.0  # starting Ray and loading the first version's replicas (a busy 2-core box)
TEST_BUDGET_S = 300.0  # default per test; a test may ask for less with @pytest.mark.budget(seconds)


class OutOfTime(Exception):
    pass


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


class Deadline:
    """Raise OutOfTime in the main thread once `seconds` have passed (SIGALRM)."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds, self.what = seconds, what

    def __enter__(self) -> "Deadline":
        def expire(signum: int, frame: Any) -> None:
            raise OutOfTime(f"{self.what} ran past its {self.seconds:.0f} s budget")

        self._previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)


@pytest.fixture(autouse=True)
def deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("budget")
    with Deadline(marker.args[0] if marker else TEST_BUDGET_S, request.node.name):
        yield


def start_ray(init: Any, shutdown: Any) -> None:
    """ray.init, once more if the node start timed out: Ray waits a hard-coded 30 s for its raylet,
    which a machine loaded by other jobs can miss."""
    try:
        init()
    except Exception as exc:
        if "timed out during startup" not in str(exc):
            raise
        shutdown()
        init()


@pytest.fixture(scope="module")
def ray_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import ray
    from ray import serve

    from reranker.clock import SystemClock
    from reranker.engine.ray_serve import LOCAL_SYSTEM_CONFIG, replica_env
    from reranker.service import RerankService
    from reranker.settings import RaySettings

    folder = tmp_path_factory.mktemp("ray")
    settings = make_settings(
        folder / "data", golden_set=write_golden_set(folder / "golden"), rollout_time_scale=1.0,
        engine_kind="ray",
        ray=RaySettings(replicas=REPLICAS, replica_cpus=RAY_CPUS / (2 * REPLICAS), placement_timeout_s=5.0,
                        start_timeout_s=SETUP_BUDGET_S, graceful_shutdown_s=10.0, request_timeout_s=60.0),
    )
    started = time.monotonic()
    with Deadline(SETUP_BUDGET_S, "starting Ray and the first version"):
        start_ray(lambda: ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False,
                                   _system_config=LOCAL_SYSTEM_CONFIG,
                                   runtime_env={"env_vars": replica_env(settings)}), ray.shutdown)
        service = RerankService(settings, SystemClock(), "tok", gate_config=FAST_GATES)
        service.start(wait=True)
    print(f"ray cluster and {REPLICAS} replicas of {service.stable_version()} up in {time.monotonic() - started:.0f} s")
    try:
        yield service
    finally:
        with Deadline(60.0, "stopping the service and Ray"):
            service.close()
            serve.shutdown()
            ray.shutdown()
