"""Loading and unloading model versions in the background, beside the ones that serve."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reranker.clock import Clock
from reranker.control.registry import USABLE, Registry
from reranker.control.store import Store, VersionRecord
from reranker.engine.embedded import EmbeddedEngines
from reranker.engine.port import EngineProvider, ScoringEngine
from reranker.errors import Conflict, ModelLoadError, NotFound
from reranker.models.loading import LoadResult, load_model
from reranker.models.memory import return_freed_memory
from reranker.models.registry import model_id_for, resolve_model_ref
from reranker.settings import Settings

log = logging.getLogger(__name__)

Loader = Callable[..., LoadResult]


@dataclass
class LoadJob:
    """One background load; `done` is set when it ends, `error` says why it failed."""

    version: str
    path: Path
    cancel: threading.Event
    done: threading.Event
    error: str | None = None
    thread: threading.Thread | None = None
    registered: bool = False  # marked ready in the registry: from here on a cancel must unload it


class VersionManager:
    """Opens a model dir as a ready engine (through the engine provider) and registers it."""

    def __init__(self, settings: Settings, registry: Registry, store: Store, clock: Clock,
                 loader: Loader = load_model, download: Callable[[str, str], str] | None = None,
                 engines: EngineProvider | None = None) -> None:
        self._settings = settings
        self._registry = registry
        self._store = store
        self._clock = clock
        self.engines: EngineProvider = engines or EmbeddedEngines(settings, clock, loader)
        self._download = download
        self._jobs: dict[str, LoadJob] = {}
        self._engines: dict[str, ScoringEngine] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> tuple[str, Path]:
        path = resolve_model_ref(ref, self._settings.models_dir, download=self._download)
        return model_id_for(path), path

    def loaded_beside(self, path: Path) -> str | None:
        """The id of a usable version loaded from the directory `path` that is not the primary
        (stable) one, else None: a hot update to it adopts that copy instead of loading a second."""
        snap = self._registry.snapshot_or_none()
        wanted = path.resolve()
        for view in self._registry.list():
            where = getattr(view.info, "path", None)
            if (view.state in USABLE and where and (snap is None or view.id != snap.primary)
                    and Path(str(where)).resolve() == wanted):
                return view.id
        return None

    def start_load(self, ref: str, on_done: Callable[[LoadJob], None] | None = None,
                   unique: bool = False) -> LoadJob:
        """Begin loading in a background thread.

        A version id already loaded or loading is refused, or with `unique` gets a suffix
        ("mini-v1~2"), so the same directory can be reloaded beside itself (same-model updates).
        """
        version, path = self.resolve(ref)
        with self._lock:
            taken = {v.id for v in self._registry.list() if v.state.value not in ("retired", "failed")}
            if unique:
                base, n = version, 2
                while version in taken:
                    version, n = f"{base}~{n}", n + 1
            if version in taken:
                raise Conflict(f"version {version!r} is already loaded or loading; unload it first")
            self._registry.add_loading(version)
            job = LoadJob(version, path, threading.Event(), threading.Event())
            self._jobs[version] = job
        job.thread = threading.Thread(target=self._run, args=(job, on_done), name=f"load-{version}", daemon=True)
        job.thread.start()
        return job

    def load_now(self, ref: str, unique: bool = False) -> LoadJob:
        job = self.start_load(ref, unique=unique)
        job.done.wait()
        if job.error:
            raise ModelLoadError(job.error)
        return job

    def _run(self, job: LoadJob, on_done: Callable[[LoadJob], None] | None) -> None:
        engine: ScoringEngine | None = None
        try:
            engine = self.engines.open(job.version, job.path, job.cancel)
            info = engine.info
            # The record first: a version the store cannot hold is not served.
            self._store.save_version(VersionRecord(info.id, str(job.path), info.backend, info.dtype, info.device,
                                                   info.bytes_in_memory, "ready", self._clock.now()))
            with self._lock:  # the cancel check and the registration are one step (see cancel_job)
                cancelled = job.cancel.is_set()
                if not cancelled:
                    self._registry.mark_ready(job.version, engine, info)
                    self._engines[job.version] = engine
                    job.registered = True
            if cancelled:
                self._safe_state(job.version, "cancelled")
                raise ModelLoadError(f"loading {job.version!r} was cancelled")
        except Exception as exc:  # any failure is reported on the job, never raised into the thread
            if engine is not None and not job.registered:
                engine.close()  # cancelled, or its record could not be written: free it now
            job.error = str(exc) or type(exc).__name__
            log.warning("loading %s failed: %s", job.version, job.error)
            self._registry.mark_failed(job.version, job.error)
        finally:
            with self._lock:
                self._jobs.pop(job.version, None)
            try:
                if on_done is not None:  # before `done`: a waiter sees what on_done set up
                    on_done(job)
            finally:
                job.done.set()

    def cancel(self, version: str) -> bool:
        with self._lock:
            job = self._jobs.get(version)
        if job is None:
            return False
        job.cancel.set()
        return True

    def cancel_job(self, job: LoadJob) -> None:
        """Stop a load and free whatever it produced, however far it got.

        Before registration the load thread sees the flag and closes its engine; once the version
        is registered (the load won the race), it is drained and unloaded in the background.
        """
        with self._lock:
            job.cancel.set()
            registered = job.registered
        if registered:
            threading.Thread(target=self._unload_cancelled, args=(job.version,),
                             name=f"unload-cancelled-{job.version}", daemon=True).start()

    def _unload_cancelled(self, version: str) -> None:
        try:
            self.unload(version)
        except Exception as exc:  # noqa: BLE001 - reported; the operator can still unload it
            log.warning("unloading the cancelled candidate %s failed: %s", version, exc)

    def _safe_state(self, version: str, state: str) -> None:
        try:
            self._store.set_version_state(version, state)
        except Exception as exc:  # noqa: BLE001 - the versions table is informational
            log.warning("could not record %s as %s: %s", version, state, exc)

    def unload(self, version: str, timeout_s: float = 60.0) -> None:
        if version not in {v.id for v in self._registry.list()}:
            raise NotFound(f"version {version!r} is not loaded")
        if not self._registry.drain_and_unload(version, timeout_s):
            raise Conflict(f"version {version!r} still had requests in flight after {timeout_s:.0f} s")
        with self._lock:
            self._engines.pop(version, None)
        return_freed_memory()
        self._store.set_version_state(version, "retired")

    def close_engine(self, version: str) -> None:
        """Release a version's memory now (replace in place: nobody can reach it any more)."""
        with self._lock:
            engine = self._engines.pop(version, None)
        if engine is not None:
            engine.close()

    def close_all(self) -> None:
        """Shutdown: cancel loads and close every engine this manager created."""
        with self._lock:
            jobs, engines = list(self._jobs.values()), list(self._engines.values())
            self._engines.clear()
        for job in jobs:
            job.cancel.set()
        for engine in engines:
            engine.close()
        self.engines.close()
