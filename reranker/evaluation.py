"""Ranking quality on a labelled set: NDCG@k of a Reranker over graded (query, document) pools.

The set is a JSON file (see assets/examples/labelled_set.json): a pool of documents (text, an
image and/or a video path relative to the file) and queries with graded relevance 0-3 per
document id (unlisted documents are 0). Media decoding is injected, so the media layer owns it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from reranker.content import Content, ImageItem, Pair, VideoItem
from reranker.errors import ForbiddenPath, InputError
from reranker.models.base import Reranker
from reranker.settings import Limits

MAX_GRADE = 3


@dataclass(frozen=True)
class ItemSpec:
    """One query or document as written in the set: text and media paths (relative)."""

    text: str | None = None
    image: str | None = None
    video: str | None = None


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    query: ItemSpec
    relevance: Mapping[str, int]  # document id -> grade; documents not listed are 0


@dataclass(frozen=True)
class LabelledSet:
    name: str
    root: Path  # media paths are relative to this folder
    k: int
    documents: Mapping[str, ItemSpec]
    queries: tuple[LabelledQuery, ...]


@dataclass(frozen=True)
class Decoders:
    """How to turn media file bytes into decoded items (the media layer's functions)."""

    image: Callable[[bytes], ImageItem]
    video: Callable[[bytes], VideoItem]


@dataclass(frozen=True)
class EvaluationResult:
    model_id: str
    k: int
    mean_ndcg: float
    per_query: Mapping[str, float]


def ndcg_at_k(scores: Sequence[float], relevances: Sequence[float], k: int) -> float:
    """NDCG@k with exponential gain (2^rel - 1); ties in score keep the given order.
    0.0 when no document is relevant."""
    if len(scores) != len(relevances):
        raise InputError(f"scores ({len(scores)}) and relevances ({len(relevances)}) differ in length")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ideal = _dcg(sorted(relevances, reverse=True)[:k])
    return _dcg([relevances[i] for i in order[:k]]) / ideal if ideal > 0 else 0.0


def _dcg(grades: Sequence[float]) -> float:
    return sum((2.0**g - 1.0) / math.log2(rank + 2) for rank, g in enumerate(grades))


def load_labelled_set(path: Path) -> LabelledSet:
    """Read and check a labelled set file; errors name the key and the bad value."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the labelled set: {exc}") from exc
    documents = {str(key): _item(value, f"documents.{key}") for key, value in _field(data, "documents", dict).items()}
    queries = tuple(_query(raw, f"queries[{i}]", documents) for i, raw in enumerate(_field(data, "queries", list)))
    if not queries:
        raise InputError(f"{path}: queries is empty")
    if len({q.id for q in queries}) != len(queries):
        raise InputError(f"{path}: query ids repeat")
    k = data.get("k", 5)
    if not isinstance(k, int) or k < 1:
        raise InputError(f"{path}: bad value for 'k': {k!r}")
    return LabelledSet(str(data.get("name", Path(path).stem)), Path(path).resolve().parent, k, documents, queries)


def _field(data: Any, key: str, kind: type) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise InputError(f"labelled set: {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _item(raw: Any, where: str) -> ItemSpec:
    if not isinstance(raw, dict) or not raw or set(raw) - {"text", "image", "video"}:
        raise InputError(f"{where}: expected an object with text, image and/or video, got {raw!r}")
    if not all(isinstance(v, str) and v for v in raw.values()):
        raise InputError(f"{where}: values must be non-empty strings, got {raw!r}")
    return ItemSpec(raw.get("text"), raw.get("image"), raw.get("video"))


def _query(raw: Any, where: str, documents: Mapping[str, ItemSpec]) -> LabelledQuery:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise InputError(f"{where}: expected an object with a string 'id', got {raw!r}")
    relevance = raw.get("relevance")
    if not isinstance(relevance, dict) or not relevance:
        raise InputError(f"{where}.relevance: expected a non-empty object, got {relevance!r}")
    for doc_id, grade in relevance.items():
        if doc_id not in documents:
            raise InputError(f"{where}.relevance: unknown document id {doc_id!r}")
        if not isinstance(grade, int) or isinstance(grade, bool) or not 0 <= grade <= MAX_GRADE:
            raise InputError(f"{where}.relevance.{doc_id}: grade must be 0..{MAX_GRADE}, got {grade!r}")
    if not any(relevance.values()):
        raise InputError(f"{where}.relevance: no document is relevant")
    return LabelledQuery(raw["id"], _item(raw.get("query"), f"{where}.query"), dict(relevance))


def build_content(spec: ItemSpec, root: Path, decoders: Decoders) -> Content:
    """Decode one item of the set; media paths must stay inside the set's folder."""
    images = (decoders.image(_read(root, spec.image)),) if spec.image else ()
    videos = (decoders.video(_read(root, spec.video)),) if spec.video else ()
    return Content(text=spec.text, images=images, videos=videos)


def _read(root: Path, relative: str) -> bytes:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ForbiddenPath(f"media path {relative!r} leaves the labelled set's folder")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"media path {relative!r}: {exc.strerror}") from exc


def evaluate(
    reranker: Reranker, labelled_set: LabelledSet, decoders: Decoders, batch_size: int = 32
) -> EvaluationResult:
    """Mean NDCG@k of the reranker over the set; every query ranks the whole document pool."""
    root = labelled_set.root
    documents = {key: build_content(spec, root, decoders) for key, spec in labelled_set.documents.items()}
    doc_ids = list(documents)
    per_query: dict[str, float] = {}
    for query in labelled_set.queries:
        content = build_content(query.query, root, decoders)
        pairs = [Pair(content, documents[doc_id]) for doc_id in doc_ids]
        scores: list[float] = []
        for start in range(0, len(pairs), batch_size):
            scores.extend(reranker.score(pairs[start : start + batch_size]))
        grades = [query.relevance.get(doc_id, 0) for doc_id in doc_ids]
        per_query[query.id] = ndcg_at_k(scores, grades, labelled_set.k)
    mean = sum(per_query.values()) / len(per_query)
    return EvaluationResult(reranker.info.id, labelled_set.k, mean, per_query)


def media_decoders(limits: Limits) -> Decoders:
    """The media layer's decoders under the given limits (frames sampled as for serving)."""
    from reranker.media import decode_image, decode_video

    return Decoders(
        image=lambda data: decode_image(data, limits, "labelled set image"),
        video=lambda data: decode_video(data, limits, "labelled set video"),
    )
