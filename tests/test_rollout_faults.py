"""Fault-injecting candidates (the mini model's fault_* options) are rolled back; the same model is
promoted. Each test builds its own model directory and waits on the rollout's state, never on time."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from reranker.control.gates import GateConfig
from reranker.service import RerankService
from reranker.service.views import StatusView
from tests.conftest import MODELS
from tests.test_hot_update import Load, start_service, wait_for

GATES = GateConfig(latency_min_samples=12, error_min_samples=20, max_memory_growth=1.0,
                   check_interval_s=0.25, window_seconds=60.0)
DONE = {"promoted", "rolled_back", "failed"}


def fault_model(folder: Path, name: str, **faults: Any) -> str:
    """A copy of mini-v1's manifest with fault options; returns the directory."""
    manifest = json.loads((MODELS / "mini-v1" / "reranker.json").read_text(encoding="utf-8"))
    manifest.update(version=f"1.0-{name}", description=f"mini-v1 with {faults}", **faults)
    directory = folder / name
    directory.mkdir(parents=True)
    (directory / "reranker.json").write_text(json.dumps(manifest), encoding="utf-8")
    return str(directory)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RerankService]:
    started = start_service(tmp_path_factory.mktemp("rollout-faults"), gates=GATES)
    yield started
    started.close()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(autouse=True)
def nothing_in_flight(service: RerankService) -> Iterator[None]:
    """Each test starts from one stable version and nothing in flight, whatever the last one left."""
    yield
    if service.status().state in ("loading", "validating", "rolling_out", "paused"):
        service.rollout_command("cancel" if service.status().state == "loading" else "rollback", "test")
    wait_for(service, DONE | {"idle", "cancelled"}, timeout_s=240)
    if service.status().state in ("rolled_back", "failed"):
        service.rollout_command("acknowledge", "test")


def roll_out(service: RerankService, path: str, plan: list[dict[str, Any]], mode: str) -> StatusView:
    with Load(service, threads=6, pause_s=0.0) as load:
        deadline = time.monotonic() + 30
        while load.total < 6:  # traffic flows before the update starts
            assert time.monotonic() < deadline, "no request was answered"
            time.sleep(0.01)
        service.submit_update(path, plan=plan, mode=mode, actor="test")
        final = wait_for(service, DONE, timeout_s=240)
    assert load.errors == [] or final.state != "promoted", load.errors[:3]
    return final


def test_a_thirty_percent_slower_candidate_is_rolled_back_by_the_latency_gate(service: RerankService,
                                                                              models: Path) -> None:
    slow = fault_model(models, "slow", fault_slowdown=0.3)
    final = roll_out(service, slow, [{"share": 5, "seconds": 2}, {"share": 100}], "new-model")
    assert final.state == "rolled_back", final.reason
    assert final.reason.startswith("live gate failed: latency"), final.reason
    gate = next(g for g in final.gates if g.name == "latency")
    assert gate.unit == "%" and gate.observed > gate.threshold


def test_shifted_scores_are_rolled_back_before_any_traffic(service: RerankService, models: Path) -> None:
    shifted = fault_model(models, "shifted", fault_score_shift=0.01)
    final = roll_out(service, shifted, [{"share": 5, "seconds": 2}, {"share": 100}], "same-model")
    assert final.state == "rolled_back" and "golden-set gate failed" in final.reason, final.reason
    this_rollout = []
    for event in final.events:  # newest first, back to this rollout's start
        this_rollout.append(event)
        if event.kind == "start":
            break
    stages = [e for e in this_rollout if e.kind == "stage"]
    assert stages == [], "the shifted candidate got traffic"


def test_a_candidate_failing_five_percent_of_requests_is_rolled_back(service: RerankService, models: Path) -> None:
    erroring = fault_model(models, "erroring", fault_error_rate=0.05)
    final = roll_out(service, erroring, [{"share": 50, "seconds": 4}, {"share": 100}], "new-model")
    assert final.state == "rolled_back", final.reason
    assert "error_rate" in final.reason or "golden" in final.reason, final.reason


def test_the_same_model_under_load_is_promoted(service: RerankService) -> None:
    stable = service.stable_version().split("~")[0]
    final = roll_out(service, str(MODELS / stable), [{"share": 5, "seconds": 2}, {"share": 100}], "same-model")
    assert final.state == "promoted", final.reason
    golden = next(g for g in final.gates if g.name == "golden_same_model")
    assert golden.observed == 0.0
