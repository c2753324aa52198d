"""UpdateManager: the tick loop outlives store errors, and status() only reads."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

import pytest

from reranker.clock import FakeClock
from reranker.control.controller import RolloutController
from reranker.control.gates import GateConfig
from reranker.control.ports import LoadPhase, LoadStatus
from reranker.control.store import Store
from reranker.service.metrics import ServiceMetrics
from reranker.service.updates import StoreSink, UpdateManager
from tests.controller_rig import PASS, FakeLoader, FakeMemory, FakeTraffic, FakeUnloader, FakeValidator
from reranker.control.livestats import LiveStats


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Rig:
    def __init__(self, folder: Path) -> None:
        self.clock = FakeClock(start=1000.0)
        self.store = Store(folder / "db.sqlite3", self.clock)
        self.log: list = []
        self.loader, self.validator = FakeLoader(self.log), FakeValidator()

        def make(stable: str, sink: StoreSink) -> RolloutController:
            return RolloutController(
                stable_id=stable, loader=self.loader, validator=self.validator, traffic=FakeTraffic(self.log),
                stats=LiveStats(), memory=FakeMemory(), unloader=FakeUnloader(self.log), sink=sink,
                clock=self.clock, gate_config=GateConfig(require_evidence=False))

        self.updates = UpdateManager(self.store, ServiceMetrics(), self.clock, make, None, tick_s=0.01)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    made = Rig(tmp_path)
    yield made
    made.updates.close()
    made.store.close()


def test_tick_loop_survives_store_errors_and_records_once_the_store_recovers(rig: Rig, monkeypatch) -> None:
    rig.updates.attach("mini-v1")
    rollout_id = rig.updates.submit("models/mini-v2", [{"share": 100}], "same-model", "alice")
    real = rig.store.update_rollout_state
    failures = {"n": 0}

    def locked(*args: object, **kwargs: object) -> None:
        failures["n"] += 1
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(rig.store, "update_rollout_state", locked)
    rig.loader.status = LoadStatus(LoadPhase.DONE, 1.0, "mini-v2")
    wait_until(lambda: failures["n"] >= 3)  # the loop kept ticking through the errors
    assert rig.updates._thread is not None and rig.updates._thread.is_alive()
    monkeypatch.setattr(rig.store, "update_rollout_state", real)
    wait_until(lambda: rig.store.get_rollout(rollout_id).state == "validating")
    rig.validator.results = [PASS]
    wait_until(lambda: rig.store.get_rollout(rollout_id).outcome == "promoted")


def test_status_only_reads(rig: Rig, monkeypatch) -> None:
    rig.updates.attach("mini-v1")
    rig.updates.close()  # no tick thread: only status() could write
    rig.updates.submit("models/mini-v2", [{"share": 100}], "same-model", "alice")
    rig.loader.status = LoadStatus(LoadPhase.DONE, 1.0, "mini-v2")
    rig.updates._require().tick()  # the controller moves on; nothing has recorded it yet

    def no_writes(*args: object, **kwargs: object) -> None:
        raise AssertionError("status() wrote to the store")

    for name in ("write", "update_rollout_state", "record_gate", "finish_rollout", "record_event"):
        monkeypatch.setattr(rig.store, name, no_writes)
    assert rig.updates.status(model_ready=True).state == "validating"
