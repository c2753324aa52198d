"""Loading and unloading model versions in the background, beside the ones that serve."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reranker.clock import Clock
from reranker.control.registry import Registry
from reranker.control.store import Store, VersionRecord
from reranker.engine import Engine
from reranker.engine.devicegate import DeviceGate
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


class VersionManager:
    """Loads a model dir into an Engine (fallback chain, verify, warm up) and registers it."""

    def __init__(self, settings: Settings, registry: Registry, store: Store, clock: Clock,
                 loader: Loader = load_model, download: Callable[[str], str] | None = None) -> None:
        self._settings = settings
        self._registry = registry
        self._store = store
        self._clock = clock
        self._loader = loader
        self._download = download
        self._jobs: dict[str, LoadJob] = {}
        self._engines: dict[str, Engine] = {}
        self._device_gates: dict[str, DeviceGate] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> tuple[str, Path]:
        path = resolve_model_ref(ref, self._settings.models_dir, download=self._download)
        return model_id_for(path), path

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
        try:
            result = self._loader(job.path, device_pref=self._settings.device, model_id=job.version,
                                  cancel=job.cancel)
            engine = Engine(result.model, self._settings.engine, self._clock,
                            gate=self._device_gate(result.model.info.device))
            engine.warm_up()
            if job.cancel.is_set():
                engine.close()
                raise ModelLoadError(f"loading {job.version!r} was cancelled")
            self._registry.mark_ready(job.version, engine, result.model.info)
            info = result.model.info
            with self._lock:
                self._engines[job.version] = engine
            self._store.save_version(VersionRecord(info.id, str(job.path), info.backend, info.dtype, info.device,
                                                   info.bytes_in_memory, "ready", self._clock.now()))
        except Exception as exc:  # any failure is reported on the job, never raised into the thread
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

    def _device_gate(self, device: str) -> DeviceGate:
        """One gate per device: versions sharing it run their forward passes one at a time."""
        with self._lock:
            return self._device_gates.setdefault(device, DeviceGate())

    def cancel(self, version: str) -> bool:
        with self._lock:
            job = self._jobs.get(version)
        if job is None:
            return False
        job.cancel.set()
        return True

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
