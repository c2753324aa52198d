"""The engine port: what the service needs from the engine that scores on one loaded version.

Two adapters implement it: the embedded `Engine` (one process, the default) and `RayEngine`
(a Ray Serve deployment of N replicas, `--engine ray`). Everything above the engine layer talks
to these two protocols only, so both modes share every line of routing and rollout control.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, Sequence

from reranker.cancel import CancelToken
from reranker.content import Content
from reranker.engine.engine import EngineStats, Scoring
from reranker.models.base import ModelInfo
from reranker.truncation import TokenLimits


class ScoringEngine(Protocol):
    """Scores requests on one loaded version; thread-safe and blocking."""

    @property
    def info(self) -> ModelInfo: ...

    def score(self, query: Content, documents: Sequence[Content], instruction: str | None = None) -> list[float]:
        """Scores in [0, 1] in document order."""
        ...

    def score_counted(self, query: Content, documents: Sequence[Content],
                      instruction: str | None = None, cancel: CancelToken | None = None,
                      limits: TokenLimits | None = None) -> Scoring:
        """Scores plus the pairs computed and their model time (what the rollout gates read).
        Raises RequestCancelled once `cancel` fires (deadline passed, client left). `limits` are
        the request's token limits, applied with this version's tokenizer."""
        ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None:
        """Let in-flight work finish, then release the version's resources."""
        ...


class EngineProvider(Protocol):
    """Creates a ready (loaded, warmed-up) engine per version, and knows its capacity."""

    kind: str  # "embedded" | "ray"

    def open(self, version: str, path: Path, cancel: threading.Event) -> ScoringEngine:
        """Load `path` as `version` and warm it up; raises ModelLoadError with the reason."""
        ...

    def check_room(self, path: Path) -> None:
        """Raise InsufficientMemory when `path` cannot be loaded beside what is loaded now."""
        ...

    def close(self) -> None:
        """Release what the provider itself holds (engines are closed by their owners)."""
        ...
