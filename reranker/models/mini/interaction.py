"""Late interaction: each query phrase meets its best-matching document phrase."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PhraseVectors:
    """The unit-length embeddings of one side's phrases, one row per phrase, with their weights."""

    vectors: np.ndarray  # (phrases, dimension)
    weights: np.ndarray  # (phrases,), not all zero


def late_interaction(query: PhraseVectors, document: PhraseVectors, weight_power: float) -> float:
    """The query's weight-averaged best cosine to the document's phrases. A document phrase's
    cosine is scaled by (its weight / the document's heaviest weight) ** weight_power, so a label
    the classifier barely believes cannot win on its own; 0 treats every weighted phrase as certain."""
    relative = document.weights / document.weights.max()
    presence = np.where(relative > 0.0, relative**weight_power, 0.0)  # a weightless phrase is absent
    best = ((query.vectors @ document.vectors.T) * presence[None, :]).max(axis=1)
    return float((query.weights * best).sum() / query.weights.sum())
