"""Pydantic shapes of the REST API (documented in the OpenAPI schema)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from reranker.service.types import FrameList, RawItem, VideoRef
from reranker.textcheck import MAX_PATH_CHARS


class VideoFrames(BaseModel):
    """A video given as a list of frames (images, in playing order), as the reference accepts.

    Frames are sampled evenly down to the frame limit, padded to an even count and timed as 2 fps.
    """

    model_config = ConfigDict(extra="forbid")
    frames: list[StrictStr] = Field(min_length=1, description="Frames: data: URIs or media-folder paths.")


class MediaDocument(BaseModel):
    """A query or document with any mix of text, images and videos.

    `image` / `video` is a `data:` URI (base64) or a path inside an allowed media folder;
    either may also be a list of them. A video may also be `{"frames": [image, ...]}`.
    """

    model_config = ConfigDict(extra="forbid")
    text: StrictStr | None = None
    image: StrictStr | list[StrictStr] | None = None
    video: StrictStr | VideoFrames | list[StrictStr | VideoFrames] | None = None

    def to_raw(self) -> RawItem:
        return RawItem(text=self.text, images=_as_tuple(self.image), videos=_videos(self.video))


def _videos(value: str | VideoFrames | list[str | VideoFrames] | None) -> tuple[VideoRef, ...]:
    items = value if isinstance(value, list) else [] if value is None else [value]
    return tuple(FrameList(tuple(v.frames)) if isinstance(v, VideoFrames) else v for v in items)


def _as_tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


class DocumentObject(MediaDocument):
    """A document object: {text?, image?, video?} plus, with `rank_fields`, any other fields whose
    values are scored as text (e.g. {"title": ..., "body": ...})."""

    model_config = ConfigDict(extra="allow")


def _non_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("is empty: give text with at least one non-space character")
    return text


# The schema says what the validator does: at least one non-space character.
NonBlank = Annotated[StrictStr, AfterValidator(_non_blank), Field(json_schema_extra={"pattern": r"\S"})]
Item = Union[NonBlank, MediaDocument]
DocumentItem = Union[NonBlank, DocumentObject]


def to_raw(item: Item) -> RawItem:
    return RawItem(text=item) if isinstance(item, str) else item.to_raw()


class RerankBody(BaseModel):
    """The rerank request of Cohere (v1 and v2), Jina and vLLM, plus `instruction`.

    Fields of other servers: `max_tokens_per_doc`, `truncate_prompt_tokens` and `truncation` are
    applied (reranker.truncation); `max_chunks_per_doc` and `priority` are accepted without effect
    (the README's REST API section says why)."""

    model_config = ConfigDict(extra="forbid")
    query: Item = Field(description="Text, or an object {text?, image?, video?}.")
    documents: Annotated[list[DocumentItem], Field(min_length=1)] | NonBlank = Field(
        description="Candidates: strings or {text?, image?, video?} objects; one string = one document."
    )
    top_n: int | None = Field(default=None, ge=0, description="Return only the best N results; 0 or absent = all.")
    return_documents: bool | None = Field(
        default=None, description="Echo each document in its result (default: false on /v1 and /v2, true on /rerank)."
    )
    rank_fields: list[StrictStr] | None = Field(
        default=None, min_length=1,
        description="Score these fields of object documents, as 'name: value' lines (Cohere's rank_fields).",
    )
    instruction: StrictStr | None = Field(default=None, description="Task instruction for the model.")
    model: StrictStr | None = Field(
        default=None,
        description="A loaded version id pins that version; any other name (a client's default model name) "
        "is served by the traffic policy, and the reply's `model` says which version answered.",
    )
    max_chunks_per_doc: int | None = Field(default=None, ge=1, description="Cohere v1: accepted; not chunked.")
    max_tokens_per_doc: int | None = Field(default=None, ge=1,
        description="Cohere v2: each document's text is cut to this many tokens (the answering"
        " model's tokenizer) before scoring.")
    truncation: bool | None = Field(default=None,
        description="Jina: true or absent, the model cuts what is over its input limit;"
        " false, such a pair is refused with 422.")
    truncate_prompt_tokens: int | None = Field(default=None, ge=-1,
        description="vLLM: query + document text are cut to this many tokens (the document's end"
        " goes first); -1 = the model's own limit.")
    priority: int | None = Field(default=None, description="vLLM / Cohere: accepted; requests are served first come, first served.")

    def document_list(self) -> list[Union[str, DocumentObject]]:
        return [self.documents] if isinstance(self.documents, str) else list(self.documents)


class CompareBody(RerankBody):
    versions: list[StrictStr] = Field(min_length=2, max_length=2, description="Two version ids.")


class RerankResultItem(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class Usage(BaseModel):
    total_tokens: int = Field(description="Tokens the serving model read for this request (its own tokenizer).")
    documents: int
    latency_ms: float
    model_ms: float


class RerankResponse(BaseModel):
    id: str
    model: str = Field(description="The version that answered (also in the X-Model-Version header).")
    results: list[RerankResultItem]
    usage: Usage


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int


class Tokens(BaseModel):
    input_tokens: int


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    tokens: Tokens


class RerankV2Response(RerankResponse):
    """Cohere v2's reply (id, results, meta) with this service's model and usage beside it."""

    meta: Meta


class ScoreBody(BaseModel):
    """vLLM's score request: one text against one or many."""

    model_config = ConfigDict(extra="forbid")
    model: StrictStr | None = None
    text_1: NonBlank | Annotated[list[NonBlank], Field(min_length=1, max_length=1)] = Field(
        description="The query (a string, or a list holding one string)."
    )
    text_2: NonBlank | Annotated[list[NonBlank], Field(min_length=1)] = Field(description="Texts to score against text_1.")
    truncate_prompt_tokens: int | None = Field(default=None, ge=-1,
        description="text_1 + each text_2 are cut to this many tokens (text_2's end goes"
        " first); -1 = the model's own limit.")
    priority: int | None = Field(default=None, description="Accepted; first come, first served.")


class ScoreItem(BaseModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class ScoreResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreItem]
    usage: ScoreUsage


class CompareResponse(BaseModel):
    a: RerankResponse
    b: RerankResponse
    changes: list[dict[str, Any]]


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    """Every error: `error` {message, type}, and `detail` (the message) for clients that read that."""

    error: ErrorDetail
    detail: str


MODEL_PATH = Field(max_length=MAX_PATH_CHARS, description="A model directory, a name under --models-dir, or a hub id.")


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: StrictStr = MODEL_PATH
    plan: StrictStr | list[dict[str, Any]] | None = Field(
        default=None, description="'default', 'demo', or a list of stages {share, seconds?, ramp?}."
    )
    mode: Literal["same-model", "new-model"] | None = None
    force_replace: bool = Field(
        default=False,
        description="When both versions cannot fit in memory: replace in place (requests queue briefly).",
    )


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: StrictStr = MODEL_PATH
