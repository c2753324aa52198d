"""One Ray Serve replica of one model version: the embedded Engine inside a replica process.

This module imports nothing from Ray: `reranker.engine.ray_serve` wraps the class in
`serve.deployment`. Each answer carries the replica's model timings and counters, so the
ingress records per-version latency and errors over all replicas as it does in one process.
"""
from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from reranker.clock import SystemClock
from reranker.content import Content
from reranker.engine.embedded import EmbeddedEngines
from reranker.engine.engine import EngineStats, Scoring
from reranker.errors import NotReady
from reranker.models.base import ModelInfo
from reranker.settings import Settings
from reranker.truncation import TokenLimits


@dataclass(frozen=True)
class ReplicaAnswer:
    scoring: Scoring
    replica: str  # host:pid of the replica process that scored it
    stats: EngineStats  # that replica's counters after this answer


class VersionReplica:
    """Loads and warms the version in __init__: Serve counts the replica running only after."""

    def __init__(self, path: str, version: str, settings: Settings) -> None:
        self._engine = EmbeddedEngines(settings, SystemClock()).open(version, Path(path), threading.Event())
        self._replica = f"{os.uname().nodename}:{os.getpid()}"

    def info(self) -> ModelInfo:
        return self._engine.info

    def pid(self) -> int:
        return os.getpid()

    async def score(self, query: Content, documents: Sequence[Content], instruction: str | None,
                    limits: TokenLimits | None = None) -> ReplicaAnswer:
        # The engine blocks its caller until the batch is scored; a thread keeps the replica's
        # event loop free, so concurrent requests are merged into one batch by the engine.
        scoring = await asyncio.get_running_loop().run_in_executor(
            None, self._engine.score_counted, query, documents, instruction, None, limits)
        return ReplicaAnswer(scoring, self._replica, self._engine.stats())

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine is not ready is replaced."""
        if not self._engine.ready:
            raise NotReady(f"engine of {self._engine.info.id} is {self._engine.state.value}")

    def __del__(self) -> None:  # Serve calls it after graceful shutdown (in-flight work done)
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()
