"""Scoring the labelled (golden) set on a loaded version, through its engine."""
from __future__ import annotations

from dataclasses import dataclass

from reranker.content import Content
from reranker.control.registry import Registry
from reranker.engine.port import ScoringEngine
from reranker.evaluation import Decoders, LabelledSet, build_content, ndcg_at_k


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

    def scores(self, registry: Registry[ScoringEngine], version: str) -> list[list[float]]:
        """Each query's scores over every document, on `version`."""
        with registry.acquire(version) as engine:
            return [engine.score(query, self.documents) for query in self.queries]

    def mean_ndcg(self, scores: list[list[float]]) -> float:
        values = [ndcg_at_k(row, grades, self.k) for row, grades in zip(scores, self.grades)]
        return sum(values) / len(values)
