"""Plain request/response values of the service facade, shared by the REST API and the UI."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reranker.truncation import TokenLimits

MediaRef = str | bytes  # a data: URI, a path inside an allowed media folder, or raw bytes


@dataclass(frozen=True)
class FrameList:
    """One video sent as its frames: images, in playing order (timed as 2 fps)."""

    frames: tuple[MediaRef, ...]


VideoRef = MediaRef | FrameList  # a video file, or a video given as a list of frames


@dataclass(frozen=True)
class RawItem:
    """A query or document before its media are resolved and decoded."""

    text: str | None = None
    images: tuple[MediaRef, ...] = ()
    videos: tuple[VideoRef, ...] = ()


@dataclass(frozen=True)
class Caller:
    """Who is asking: drives sticky routing and attribute rules."""

    user_key: str | None = None  # X-User-Id header, or the browser session hash
    region: str | None = None  # X-Region header
    client_ip: str | None = None


@dataclass(frozen=True)
class RankRequest:
    query: RawItem
    documents: tuple[RawItem, ...]
    top_n: int | None = None
    instruction: str | None = None
    caller: Caller = field(default_factory=Caller)
    request_id: str | None = None  # the client's X-Request-Id, kept as the answer's id; None = a new one
    limits: TokenLimits | None = None  # token limits from the client (max_tokens_per_doc, ...); None = none


@dataclass(frozen=True)
class RankedDocument:
    index: int  # position in the request's documents
    score: float


@dataclass(frozen=True)
class RankResult:
    request_id: str
    version: str  # the model version that answered
    results: tuple[RankedDocument, ...]  # best first, cut to top_n
    latency_ms: float
    n_documents: int
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RankChange:
    index: int
    rank_a: int | None  # 1-based rank in A's top-k (None = not in top-k)
    rank_b: int | None
    mark: str  # "up" | "down" | "same" | "new" | "dropped"


@dataclass(frozen=True)
class CompareResult:
    a: RankResult
    b: RankResult
    changes: tuple[RankChange, ...]  # one per document in B's order
