"""Issue 11, item 6: a hot update to a directory already loaded beside the stable version adopts
that copy as its candidate — no second copy (`mini-v2~2`), no reload — whether it came in through
the REST/service hot update or the console's "roll out the loaded version" offer, and whether or
not an experiment gives it traffic. A rollback unloads it like any candidate."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from reranker.service import RerankService
from tests.conftest import wait_for_version
from tests.test_hot_update import Load, assert_serves, start_service, the_other, wait_for

PLAN = [{"share": 50, "seconds": 60}, {"share": 100}]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RerankService]:
    started = start_service(tmp_path_factory.mktemp("adopt"))
    yield started
    started.close()


def load_beside(service: RerankService, path: str) -> tuple[str, float | None]:
    version = service.load_version(path, actor="test")
    assert wait_for_version(service, version) == "ready"
    return version, service.registry.get(version).loaded_at


def no_second_copy(service: RerankService) -> None:
    ids = [v.id for v in service.registry.list()]
    assert not [i for i in ids if "~" in i], ids


def test_hot_update_adopts_the_copy_loaded_beside_then_rollback_unloads_it(service: RerankService) -> None:
    stable, path = service.stable_version(), the_other(service)
    version, loaded_at = load_beside(service, path)
    rollout_id = service.submit_update(path, plan=PLAN, actor="alice")
    status = wait_for(service, {"rolling_out", "rolled_back", "failed"})
    assert (status.state, status.candidate) == ("rolling_out", version), status
    assert service.registry.get(version).loaded_at == loaded_at  # the same engine: nothing reloaded
    no_second_copy(service)
    with Load(service, threads=2) as load:
        load.wait_for_answers(4)
        service.rollout_command("rollback", actor="alice")
        wait_for(service, {"rolled_back"})
        load.settle(stable)
    assert load.errors == [], load.errors[:5]
    assert service.registry.get(version).state.value == "retired"
    assert service.store.get_rollout(rollout_id).outcome == "rolled_back"
    service.rollout_command("acknowledge", actor="alice")
    assert_serves(service, stable)


def test_rolling_out_a_loaded_version_with_experiment_traffic_adopts_it(service: RerankService) -> None:
    stable, path = service.stable_version(), the_other(service)
    version, loaded_at = load_beside(service, path)
    service.set_traffic({"weights": {stable: 50, version: 50}, "sticky": False}, actor="test")
    service.start_rollout_of(version, actor="bob", plan=PLAN)
    status = wait_for(service, {"rolling_out", "rolled_back", "failed"})
    assert (status.state, status.candidate) == ("rolling_out", version), status
    assert service.registry.get(version).loaded_at == loaded_at
    no_second_copy(service)
    service.rollout_command("promote", actor="bob")
    final = wait_for(service, {"promoted"})
    assert final.stable == version == Path(path).name
    deadline = time.monotonic() + 60
    while service.registry.get(stable).state.value != "retired":
        assert time.monotonic() < deadline, service.versions()
        time.sleep(0.05)
    no_second_copy(service)
    assert_serves(service, version)
