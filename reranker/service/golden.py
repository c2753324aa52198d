"""Scoring the labelled (golden) set on a loaded version, through its engine.

Golden pairs run in fixed chunks of CHUNK_PAIRS pairs, each chunk one forward pass of its own at
background priority (Engine.score_isolated): never batched with live requests, never from the
cache, and the same chunks on every version, so identical weights give identical scores (even in
bf16, where a score depends on what else is in its batch) and live traffic waits at most one small
chunk at a time."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from reranker.content import Content, Pair
from reranker.control.registry import Registry
from reranker.engine.port import ScoringEngine
from reranker.evaluation import Decoders, LabelledSet, build_content, ndcg_at_k


CHUNK_PAIRS = 8  # golden pairs per isolated forward pass (half a default live batch)


@dataclass(frozen=True)
class DecodedSet:
    """The labelled set with its media decoded once: queries, documents and grades."""

    queries: list[Content]
    documents: list[Content]
    grades: list[list[int]]  # per query, per document
    k: int

    @classmethod
    def build(cls, labelled: LabelledSet, decoders: Decoders) -> "DecodedSet":
        ids = list(labelled.documents)
        return cls(
            queries=[build_content(q.query, labelled.root, decoders) for q in labelled.queries],
            documents=[build_content(labelled.documents[d], labelled.root, decoders) for d in ids],
            grades=[[q.relevance.get(d, 0) for d in ids] for q in labelled.queries],
            k=labelled.k,
        )

    def pairs(self) -> list[Pair]:
        """Every (query, document) pair, query by query, in a fixed order."""
        return [Pair(query, document) for query in self.queries for document in self.documents]

    def chunks(self, size: int = CHUNK_PAIRS) -> list[list[Pair]]:
        pairs = self.pairs()
        return [pairs[i:i + size] for i in range(0, len(pairs), size)]

    def scores(self, registry: Registry[ScoringEngine], version: str) -> list[list[float]]:
        """Each query's scores over every document, on `version`."""
        return self.paired_scores(registry, (version,))[0]

    def paired_scores(self, registry: Registry[ScoringEngine], versions: tuple[str, ...],
                      progress: Callable[[int, int], None] | None = None) -> list[list[list[float]]]:
        """The same chunks on each version in turn (chunk 1 on each, then chunk 2, ...): per
        version, each query's scores over every document. `progress(done, total)` is told the
        pairs scored so far, every version counted, after each chunk."""
        flat: list[list[float]] = [[] for _ in versions]
        sessions: list[dict] = [{} for _ in versions]  # each version's run starts from nothing
        total, done = len(self.queries) * len(self.documents) * len(versions), 0
        if progress is not None:
            progress(done, total)
        for chunk in self.chunks():
            for i, version in enumerate(versions):
                with registry.acquire(version) as engine:
                    flat[i].extend(score_isolated(engine, chunk, sessions[i])[0])
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        n = len(self.documents)
        return [[row[q * n:(q + 1) * n] for q in range(len(self.queries))] for row in flat]

    def mean_ndcg(self, scores: list[list[float]]) -> float:
        values = [ndcg_at_k(row, grades, self.k) for row, grades in zip(scores, self.grades)]
        return sum(values) / len(values)


def score_isolated(engine: ScoringEngine, pairs: list[Pair], session: dict, share: float | None = None
                   ) -> tuple[list[float], float]:
    """The engine's isolated lane where it has one (the embedded Engine; `share`: the most of the
    device time this work may take from waiting live batches, default the gate's); otherwise (e.g.
    a Ray deployment) its ordinary scoring, query by query, timed here."""
    isolated = getattr(engine, "score_isolated", None)
    if isolated is not None:
        return isolated(pairs, session, share=share)
    started = time.monotonic()
    scores: list[float] = []
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j].query is pairs[i].query and pairs[j].instruction == pairs[i].instruction:
            j += 1
        scores.extend(engine.score(pairs[i].query, [p.document for p in pairs[i:j]], pairs[i].instruction))
        i = j
    return scores, time.monotonic() - started
