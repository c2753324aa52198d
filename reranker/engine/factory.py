"""Picks the engine provider from the settings. Ray is imported only for `--engine ray`."""
from __future__ import annotations

from reranker.clock import Clock
from reranker.engine.embedded import EmbeddedEngines, Loader
from reranker.engine.port import EngineProvider
from reranker.models.loading import load_model
from reranker.models.memory import MemoryProbe
from reranker.settings import Settings


def make_engines(settings: Settings, clock: Clock, loader: Loader = load_model,
                 memory: MemoryProbe | None = None) -> EngineProvider:
    """The loader and the memory probe serve the embedded engines (Ray replicas load and measure
    on their own nodes)."""
    if settings.engine_kind == "ray":
        from reranker.engine.ray_serve import RayEngines  # the only place that may import ray

        return RayEngines(settings, clock)
    return EmbeddedEngines(settings, clock, loader, memory)
