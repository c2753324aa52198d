"""Operator actions on versions: hot updates, loading beside, unloading, rollout commands.

Credentials are checked by the callers' front end; every action here is checked, recorded in the
audit log, then applied (a refusal is audited too)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from reranker.control.registry import Registry
from reranker.control.store import Store
from reranker.engine.port import ScoringEngine
from reranker.errors import InputError, InsufficientMemory, NotFound, RerankerError, StoreUnavailable
from reranker.service.catalog import VersionCatalog
from reranker.service.updates import UpdateManager
from reranker.service.versions import VersionManager
from reranker.service.views import StatusView

log = logging.getLogger(__name__)
ReplaceInPlace = Callable[[str, str], int]  # (model ref, actor) -> rollout id


def audit_refusal(store: Store, actor: str, action: str, target: str, exc: Exception) -> None:
    """Record a refused action; best effort (nothing changed, so nothing must wait for it)."""
    try:
        store.record_audit(actor, action, target, "refused", str(exc))
    except StoreUnavailable as lost:
        log.warning("could not audit a refused %s by %s: %s", action, actor, lost)


class VersionOperations:
    """What the Operator tab and the admin routes do to versions and rollouts."""

    def __init__(self, models_dir: Path, registry: Registry[ScoringEngine], store: Store,
                 versions: VersionManager, catalog: VersionCatalog, updates: UpdateManager,
                 replace_in_place: ReplaceInPlace, model_ready: Callable[[], bool]) -> None:
        self._models_dir = models_dir
        self._registry = registry
        self._store = store
        self._versions = versions
        self._catalog = catalog
        self._updates = updates
        self._replace_in_place = replace_in_place
        self._model_ready = model_ready

    def known_model_dirs(self) -> list[str]:
        root = self._models_dir
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.iterdir()
                      if p.is_dir() and ((p / "reranker.json").exists() or (p / "config.json").exists()))

    def status(self) -> StatusView:
        return self._updates.status(self._model_ready())

    def submit_update(self, path: str, plan: str | Sequence[Any] | None = None, mode: str | None = None,
                      actor: str = "operator", force_replace: bool = False) -> int:
        try:
            self.check_room(path)
        except InsufficientMemory as exc:
            if not force_replace:
                audit_refusal(self._store, actor, "hot_update", path, exc)
                raise
            return self._replace_in_place(path, actor)
        except RerankerError as exc:
            audit_refusal(self._store, actor, "hot_update", path, exc)
            raise
        return self._updates.submit(path, plan, mode, actor)

    def check_room(self, ref: str) -> None:
        """Refuse before anything changes when the candidate cannot be loaded beside the stable one."""
        _, path = self._versions.resolve(ref)  # also reads the manifest: a broken one is named
        if self._versions.loaded_beside(path):
            return  # a hot update adopts the copy in memory: nothing more to load
        self._versions.engines.check_room(path)

    def rollout_command(self, command: str, actor: str = "operator") -> None:
        self._updates.command(command, actor)

    def load_version(self, path: str, actor: str = "operator") -> str:
        """Check, record, then start loading; nothing loads unless the audit entry is written."""
        try:
            self.check_room(path)
            version, _ = self._versions.resolve(path)
            self._registry.check_new(version)
        except RerankerError as exc:
            audit_refusal(self._store, actor, "load_version", path, exc)
            raise
        self._store.record_audit(actor, "load_version", path, "started", version)
        try:
            job = self._versions.start_load(path)
        except RerankerError as exc:  # lost a race after the check
            audit_refusal(self._store, actor, "load_version", path, exc)
            raise
        return job.version

    def unload_version(self, version: str, actor: str = "operator") -> None:
        """Check, record, then drain and unload."""
        try:
            self._registry.check_unloadable(version)
        except RerankerError as exc:
            audit_refusal(self._store, actor, "unload_version", version, exc)
            raise
        self._store.record_audit(actor, "unload_version", version, "ok", "")
        try:
            self._versions.unload(version)
        except RerankerError as exc:
            audit_refusal(self._store, actor, "unload_version", version, exc)
            raise

    def start_rollout_of(self, version: str, actor: str = "operator", plan: str | None = "default") -> int:
        """Roll out a version already loaded beside the stable one: the update adopts the copy in
        memory as its candidate (no reload, no `name~2`)."""
        info = self._catalog.get(version)
        if info is None or not info.path:
            raise NotFound(f"version {version!r} is not loaded")
        if info.stable:
            raise InputError(f"version {version!r} already serves as the stable version")
        return self._updates.submit(info.path, plan, "new-model", actor)
