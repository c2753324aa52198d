"""Issue 8, item 8: a cancel that races the candidate's load always frees the candidate.

The attack saw `cancelled` reported while the candidate stayed `ready` at 134 MB (2 of 15 timed
tries): the load finished between two controller ticks, so the cancel flag came too late for the
loader to see. Here an injected loader and a stopped tick loop order the race by events, not luck.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from reranker.clock import SystemClock
from reranker.models.loading import load_model
from reranker.service import RerankService
from tests.conftest import ADMIN_TOKEN, MODELS, make_settings

CANDIDATE = str(MODELS / "mini-v2")
FREED = ("retired", "failed")


class GatedLoader:
    """Loads the real model, but only once the test releases it; ignores the cancel flag on
    purpose (a load step that cannot be interrupted, as a long from_pretrained is)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def __call__(self, path: Path, **kwargs: Any) -> Any:
        kwargs.pop("cancel", None)
        if "mini-v2" in str(path):
            self.started.set()
            assert self.release.wait(60), "the test never released the load"
        try:
            return load_model(path, **kwargs)
        finally:
            if "mini-v2" in str(path):
                self.returned.set()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Any, GatedLoader]]:
    loader = GatedLoader()
    service = RerankService(make_settings(tmp_path / "data"), SystemClock(), ADMIN_TOKEN, loader=loader)
    service.start(wait=True)
    service.updates.close()  # no background ticks: the test decides when the controller looks
    yield service, loader
    service.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def candidate_state(service: Any) -> str:
    views = [v for v in service.registry.list() if v.id.startswith("mini-v2")]
    assert len(views) == 1, views
    return views[0].state.value


def assert_freed(service: Any) -> None:
    wait_until(lambda: candidate_state(service) in FREED, "the cancelled candidate to leave memory")
    assert service.usable_versions() == ["mini-v1"]
    assert not [v for v in service.versions_manager._engines if v.startswith("mini-v2")]
    status = service.status()
    assert (status.state, status.last_outcome) == ("cancelled", "cancelled")


def test_cancel_after_the_load_finished_but_before_the_tick_frees_the_candidate(rig: tuple[Any, GatedLoader]) -> None:
    service, loader = rig
    service.submit_update(CANDIDATE, plan="demo", actor="alice")
    loader.release.set()
    # The load completes and registers the candidate; the controller has not polled it yet.
    wait_until(lambda: candidate_state(service) == "ready", "the candidate to be ready")
    assert service.status().state == "loading"
    service.rollout_command("cancel", actor="bob")
    assert_freed(service)
    service.updates.tick()
    assert candidate_state(service) in FREED and service.status().state == "cancelled"


def test_cancel_while_the_loader_runs_frees_what_it_returns(rig: tuple[Any, GatedLoader]) -> None:
    service, loader = rig
    service.submit_update(CANDIDATE, plan="demo", actor="alice")
    assert loader.started.wait(30)
    service.rollout_command("cancel", actor="bob")
    loader.release.set()  # the uninterruptible step returns a model after the cancel
    assert loader.returned.wait(30)
    assert_freed(service)
    assert candidate_state(service) == "failed"
    service.updates.tick()
    assert service.usable_versions() == ["mini-v1"]
