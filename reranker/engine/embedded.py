"""The embedded engine provider: versions load into this process, one Engine each."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from reranker.clock import Clock
from reranker.engine.devicegate import DeviceGate
from reranker.engine.engine import Engine
from reranker.errors import InsufficientMemory, ModelLoadError, RerankerError
from reranker.models.loading import LoadResult, estimate_footprint, load_model
from reranker.models.memory import MemoryProbe, SystemMemoryProbe
from reranker.models.registry import detect_backend
from reranker.settings import Settings

Loader = Callable[..., LoadResult]
SWAP_HEADROOM = 0.9  # use at most 90% of the free memory for the candidate


class EmbeddedEngines:
    """EngineProvider: load through the fallback chain, wrap in an Engine, warm up."""

    kind = "embedded"

    def __init__(self, settings: Settings, clock: Clock, loader: Loader = load_model,
                 memory: MemoryProbe | None = None) -> None:
        self._settings = settings
        self._clock = clock
        self._loader = loader
        self._memory: MemoryProbe = memory or SystemMemoryProbe()
        self._device_gates: dict[str, DeviceGate] = {}
        self._lock = threading.Lock()

    def open(self, version: str, path: Path, cancel: threading.Event) -> Engine:
        result = self._loader(path, device_pref=self._settings.device, model_id=version, cancel=cancel)
        engine = Engine(result.model, self._settings.engine, self._clock,
                        gate=self._device_gate(result.model.info.device))
        try:
            engine.warm_up()
        except Exception:
            engine.close()
            raise
        return engine

    def check_room(self, path: Path) -> None:
        """Refuse before anything changes when the candidate cannot fit beside the stable version."""
        backend = detect_backend(path)
        probe = self._memory
        on_gpu = self._settings.device != "cpu" and bool(probe.gpus())
        dtype = backend.supported_dtypes("cuda" if on_gpu else "cpu")[0]
        try:
            need = estimate_footprint(path, dtype)
        except RerankerError:
            raise
        except Exception as exc:  # e.g. a corrupt safetensors header: refuse with the reason, not a 500
            raise ModelLoadError(
                f"cannot read the size of {path.name} from its files: {type(exc).__name__}: {exc}") from exc
        free = max((g.free_bytes for g in probe.gpus()), default=0) if on_gpu else probe.host_available_bytes()
        if need > free * SWAP_HEADROOM:
            raise InsufficientMemory(
                f"the candidate {path.name} needs ~{need / 2**30:.1f} GiB in {dtype} but only "
                f"{free / 2**30:.1f} GiB is free beside the serving version: both cannot be loaded at once. "
                "Re-submit with force_replace=true to replace in place (requests queue while it loads).")

    def close(self) -> None:
        """Nothing of its own to release."""

    def _device_gate(self, device: str) -> DeviceGate:
        """One gate per device: versions sharing it run their forward passes one at a time,
        live batches first (background work: golden-set chunks, paired replays)."""
        with self._lock:
            return self._device_gates.setdefault(device, DeviceGate(clock=self._clock.monotonic))
