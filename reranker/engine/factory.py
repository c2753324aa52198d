"""Picks the engine provider from the settings. Ray is imported only for `--engine ray`."""
from __future__ import annotations

from reranker.clock import Clock
from reranker.engine.embedded import EmbeddedEngines
from reranker.engine.port import EngineProvider
from reranker.settings import Settings


def make_engines(settings: Settings, clock: Clock) -> EngineProvider:
    if settings.engine_kind == "ray":
        from reranker.engine.ray_serve import RayEngines  # the only place that may import ray

        return RayEngines(settings, clock)
    return EmbeddedEngines(settings, clock)
