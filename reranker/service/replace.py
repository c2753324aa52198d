"""Replace-in-place updates, for when the old and new versions cannot both fit in memory.

New requests queue at an admission gate (they are not refused) while the stable version
finishes its in-flight work, is unloaded, and the new one loads. If the new one fails to
load, the old one is loaded again. Either way the gate reopens and queued requests run.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from reranker.control.policy import TrafficPolicy
from reranker.errors import Conflict, NotReady

if TYPE_CHECKING:
    from reranker.service.core import RerankService

log = logging.getLogger(__name__)


class Admission:
    """Requests pass while open; while closed they wait up to a timeout, then get a 503.

    It also counts admitted requests, so a replacement can wait until none is left running.
    """

    def __init__(self, wait_s: float) -> None:
        self._open = threading.Event()
        self._open.set()
        self._wait_s = wait_s
        self._inside = 0
        self._changed = threading.Condition()
        self.queued = 0  # requests that found the gate closed and waited (since start)

    @contextmanager
    def admitted(self) -> Iterator[None]:
        if not self._open.is_set():
            with self._changed:
                self.queued += 1
        if not self._open.wait(self._wait_s):
            raise NotReady(f"the model is being replaced in place; still not ready after {self._wait_s:.0f} s")
        with self._changed:
            self._inside += 1
        try:
            yield
        finally:
            with self._changed:
                self._inside -= 1
                self._changed.notify_all()

    def wait_empty(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._inside == 0, timeout=timeout_s)

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()


def replace_in_place(service: "RerankService", ref: str, actor: str) -> int:
    """Start a replace-in-place update in the background; returns its rollout id."""
    stable = service.stable_version()
    if stable is None:
        raise NotReady("no stable version is serving yet")
    if not service.updates.is_idle():
        raise Conflict("a hot update is in progress; finish or roll it back before replacing in place")
    if not service.admission.is_open:
        raise Conflict("a replace-in-place update is already running")
    old_path = next(v["path"] for v in service.versions() if v["id"] == stable)
    with service.store.transaction():  # the record first: nothing starts unless it is written
        rollout_id = service.store.start_rollout(ref, stable, {"name": "replace-in-place", "stages": []},
                                                 "replace-in-place", "loading", actor)
        service.store.record_audit(actor, "hot_update", ref, "started", f"replace in place, rollout {rollout_id}")
    service.admission.close()
    threading.Thread(target=_run, args=(service, ref, stable, old_path, rollout_id), daemon=True,
                     name="replace-in-place").start()
    return rollout_id


def _run(service: "RerankService", ref: str, stable: str, old_path: str, rollout_id: int) -> None:
    store = service.store
    try:
        if not service.admission.wait_empty(timeout_s=60.0):
            raise Conflict(f"{stable} still had requests in flight after 60 s")
        service.versions_manager.close_engine(stable)
        try:
            job = service.versions_manager.load_now(ref, unique=True)
            outcome, reason = "promoted", ""
        except Exception as exc:  # the old version comes back; the reason is recorded
            reason = f"loading {ref} failed: {exc}; reloading {stable}"
            store.record_event("alert", "replace_failed", reason, rollout_id)
            job = service.versions_manager.load_now(old_path, unique=True)
            outcome = "rolled_back"
        service.registry.swap(TrafficPolicy.single(job.version), job.version)
        service.registry.drain_and_unload(stable, timeout_s=5.0)
        store.set_stable(job.version, str(job.path))
        service.updates.rebase(job.version)
        store.finish_rollout(rollout_id, outcome, outcome, reason or None)
        store.record_event("info", "replaced", f"{job.version} now serves (replaced {stable} in place)", rollout_id)
    except Exception as exc:  # never leave the gate closed
        log.exception("replace in place failed")
        store.finish_rollout(rollout_id, "failed", "failed", str(exc))
        store.record_event("alert", "replace_failed", f"replace in place failed: {exc}", rollout_id)
    finally:
        service.admission.open()

