"""How much two rankings of the same documents agree: top-k overlap and rank correlation."""
from __future__ import annotations

import threading
from typing import Sequence

from reranker.service.types import RankChange
from reranker.service.views import ShadowLiveView


def ranking(scores: Sequence[float]) -> list[int]:
    """Document indices, best first; ties keep document order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def top_k_overlap(a: Sequence[int], b: Sequence[int], k: int) -> float:
    """Share of A's top k that is also in B's top k (1.0 = same set)."""
    k = min(k, len(a), len(b))
    if k == 0:
        return 1.0
    return len(set(a[:k]) & set(b[:k])) / k


def spearman(a_scores: Sequence[float], b_scores: Sequence[float]) -> float:
    """Spearman rank correlation of two score lists over the same documents (1.0 = same order)."""
    n = len(a_scores)
    if n < 2:
        return 1.0
    ra, rb = _ranks(a_scores), _ranks(b_scores)
    d2 = sum((x - y) ** 2 for x, y in zip(ra, rb))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def _ranks(scores: Sequence[float]) -> list[int]:
    out = [0] * len(scores)
    for rank, index in enumerate(ranking(scores)):
        out[index] = rank
    return out


def rank_changes(order_a: Sequence[int], order_b: Sequence[int], k: int) -> list[RankChange]:
    """For each document in B's order: its 1-based rank in A's and B's top k and a mark."""
    top_a = {doc: r + 1 for r, doc in enumerate(order_a[:k])}
    top_b = {doc: r + 1 for r, doc in enumerate(order_b[:k])}
    changes = []
    for doc in order_b:
        ra, rb = top_a.get(doc), top_b.get(doc)
        if rb is None and ra is None:
            mark = "same"
        elif ra is None:
            mark = "new"
        elif rb is None:
            mark = "dropped"
        else:
            mark = "up" if rb < ra else "down" if rb > ra else "same"
        changes.append(RankChange(index=doc, rank_a=ra, rank_b=rb, mark=mark))
    return changes


class ShadowStats:
    """Running agreement between primary and shadow answers, per (primary, shadow) pair."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[tuple[str, str], list[float]] = {}

    def record(self, primary: str, shadow: str, overlap: float, correlation: float) -> None:
        with self._lock:
            sums = self._sums.setdefault((primary, shadow), [0.0, 0.0, 0.0])
            sums[0] += 1
            sums[1] += overlap
            sums[2] += correlation

    def summary(self) -> list[ShadowLiveView]:
        with self._lock:
            return [
                ShadowLiveView(primary=p, shadow=s, requests=int(n), top_k_overlap=o / n, rank_correlation=r / n)
                for (p, s), (n, o, r) in sorted(self._sums.items())
            ]
