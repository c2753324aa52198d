"""The per-version score cache: a bounded, thread-safe LRU of pair scores."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from reranker.content import Content
from reranker.models.base import DEFAULT_INSTRUCTION

ScoreKey = tuple[str, str, str, str]


def score_key(model_id: str, instruction: str | None, query: Content, document: Content) -> ScoreKey:
    """(model id, instruction, query digest, document digest); no instruction means the default."""
    return (model_id, instruction or DEFAULT_INSTRUCTION, query.digest, document.digest)


@dataclass(frozen=True)
class ScoreCacheStats:
    entries: int
    hits: int
    misses: int


class ScoreCache:
    """Scores already computed, evicted least recently used first; 0 entries disables it."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max(0, max_entries)
        self._scores: OrderedDict[ScoreKey, float] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: ScoreKey) -> float | None:
        with self._lock:
            score = self._scores.get(key)
            if score is None:
                self._misses += 1
                return None
            self._scores.move_to_end(key)
            self._hits += 1
            return score

    def put(self, key: ScoreKey, score: float) -> None:
        if self._max_entries == 0:
            return
        with self._lock:
            self._scores[key] = score
            self._scores.move_to_end(key)
            while len(self._scores) > self._max_entries:
                self._scores.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._scores.clear()

    def stats(self) -> ScoreCacheStats:
        with self._lock:
            return ScoreCacheStats(len(self._scores), self._hits, self._misses)
