"""The Reranker protocol every backend implements, and what a loaded model reports."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from reranker.content import Pair

DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is and where it lives."""

    id: str  # version id: the directory name unless the manifest names it
    name: str  # human-readable model name, e.g. "Qwen3-VL-Reranker-2B" or "mini"
    version: str
    backend: str  # "qwen3-vl" | "mini"
    dtype: str  # e.g. "bfloat16", "float32"
    device: str  # e.g. "cpu", "cuda:0", or "cuda:0,cuda:1" for a device map
    bytes_in_memory: int
    path: str
    follows_instruction: bool = True  # False: the backend ignores a request's instruction (mini)


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, document) pairs. Thread-safety: callers serialise calls to score()."""

    @property
    def info(self) -> ModelInfo: ...

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """Relevance scores in [0, 1], one per pair, in the order given.

        A model that keeps caches of its own between calls may also offer
        `score_isolated(pairs, session)`: the same scores computed without its shared caches
        (`session`, a dict kept by the caller for one isolated run, may hold what that run computed),
        so the result depends on the pairs and the run alone. The engine uses it for golden-set
        chunks and paired replays; without it, score() is used."""
        ...

    def close(self) -> None:
        """Release the model's memory. The object is unusable afterwards."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """A backend that can say how many tokens its model reads per pair (the API's usage)."""

    def count_tokens(self, pairs: Sequence[Pair]) -> list[int]:
        """Tokens per pair, in order; called right after score() on the same pairs."""
        ...


@dataclass(frozen=True)
class Placement:
    """Where and in what precision a backend should load: one step of the fallback chain."""

    device: str  # "cpu", "cuda:0", or "auto" with a device_map
    dtype: str  # "bfloat16" | "float16" | "float32"
    device_map: dict[str, str | int] | None = None


class Backend(Protocol):
    """A backend module's loader. Registered by name in reranker.models.registry."""

    name: str

    def matches(self, path: Path) -> bool:
        """True when the directory holds a model of this backend."""
        ...

    def estimate_bytes(self, path: Path, dtype: str) -> int:
        """Memory the weights will take once loaded in dtype (from file headers, no loading)."""
        ...

    def supported_dtypes(self, device: str) -> list[str]:
        """Precisions worth trying on that device, best first."""
        ...

    def load(self, path: Path, placement: Placement, model_id: str) -> Reranker: ...
