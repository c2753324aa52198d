"""How texts and label words become phrases: clauses of a text, head nouns of class names."""
from __future__ import annotations

import re

CLAUSE_END = re.compile(r"(?<=[.!?;:])\s+")


def split_clauses(text: str) -> list[str]:
    """The clauses of a text, cut after . ! ? ; or : followed by white space; never empty."""
    clauses = [part.strip() for part in CLAUSE_END.split(text.strip()) if part.strip()]
    return clauses or [text.strip()]


def head_noun(label: str) -> str | None:
    """The last word of a multi-word class name ("tiger cat" -> "cat"); None for one word."""
    words = label.split()
    return words[-1] if len(words) > 1 else None


def with_head_nouns(labels: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The labels plus the head noun of each multi-word one, weighing the sum of the labels it
    ends ("Egyptian cat" 0.5 + "tiger cat" 0.3 -> "cat" 0.8); a head that is a label already
    is not repeated."""
    present = {word for word, _ in labels}
    heads: dict[str, float] = {}
    for word, weight in labels:
        head = head_noun(word)
        if head is not None and head not in present:
            heads[head] = heads.get(head, 0.0) + weight
    return labels + list(heads.items())
