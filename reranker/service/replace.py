"""Replace-in-place updates, for when the old and new versions cannot both fit in memory.

New requests queue at an admission gate (they are not refused) while the stable version
finishes its in-flight work, is unloaded, and the new one loads. If the new one fails to
load, the old one is loaded again. Either way the gate reopens and queued requests run.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from reranker.control.policy import TrafficPolicy
from reranker.control.registry import Registry
from reranker.control.store import Store
from reranker.engine.port import ScoringEngine
from reranker.errors import Conflict, NotReady
from reranker.service.catalog import VersionCatalog
from reranker.service.updates import UpdateManager
from reranker.service.versions import VersionManager

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


class InPlaceReplacer:
    """Runs replace-in-place updates: close the admission gate, drain, unload, load, reopen."""

    def __init__(self, registry: Registry[ScoringEngine], store: Store, versions: VersionManager,
                 catalog: VersionCatalog, updates: UpdateManager, admission: Admission) -> None:
        self._registry = registry
        self._store = store
        self._versions = versions
        self._catalog = catalog
        self._updates = updates
        self._admission = admission

    def start(self, ref: str, actor: str) -> int:
        """Start a replace-in-place update in the background; returns its rollout id.

        The run goes through the rollout state machine (REPLACING): a second update of any kind is
        refused with a Conflict (409) while it runs, and status is yellow until it ends."""
        stable = self._catalog.stable_version()
        if stable is None:
            raise NotReady("no stable version is serving yet")
        serving = self._catalog.get(stable)
        old_path = serving.path if serving is not None else None
        if old_path is None:
            raise NotReady(f"the stable version {stable} has no model path to reload from")
        rollout_id = self._updates.submit_replace(ref, actor)  # recorded first: nothing starts unless written
        self._admission.close()
        threading.Thread(target=self._run, args=(ref, stable, old_path), daemon=True,
                         name="replace-in-place").start()
        return rollout_id

    def _run(self, ref: str, stable: str, old_path: str) -> None:
        serving: str | None = None
        try:
            if not self._admission.wait_empty(timeout_s=60.0):
                raise Conflict(f"{stable} still had requests in flight after 60 s")
            self._versions.close_engine(stable)
            try:
                job = self._versions.load_now(ref, unique=True)
                loaded_new, reason = True, ""
            except Exception as exc:  # the old version comes back; the reason is recorded
                reason = f"loading {ref} failed: {exc}; reloading {stable}"
                job = self._versions.load_now(old_path, unique=True)
                loaded_new = False
            self._registry.swap(TrafficPolicy.single(job.version), job.version)
            serving = job.version
            self._registry.drain_and_unload(stable, timeout_s=5.0)
            self._store.set_stable(job.version, str(job.path))
            self._updates.finish_replace(job.version, loaded_new, reason)
        except Exception as exc:  # never leave the gate closed, nor the state machine in REPLACING
            log.exception("replace in place failed")
            try:
                self._updates.finish_replace(serving, False, f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("could not record the end of the replace-in-place run")
        finally:
            self._admission.open()
