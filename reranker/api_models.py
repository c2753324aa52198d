"""Pydantic shapes of the REST API (documented in the OpenAPI schema)."""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from reranker.service.types import RawItem
from reranker.textcheck import MAX_PATH_CHARS


class MediaDocument(BaseModel):
    """A query or document with any mix of text, images and videos.

    `image` / `video` is a `data:` URI (base64) or a path inside an allowed media folder;
    either may also be a list of them.
    """

    model_config = ConfigDict(extra="forbid")
    text: StrictStr | None = None
    image: StrictStr | list[StrictStr] | None = None
    video: StrictStr | list[StrictStr] | None = None

    def to_raw(self) -> RawItem:
        return RawItem(text=self.text, images=_as_tuple(self.image), videos=_as_tuple(self.video))


def _as_tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


Item = Union[StrictStr, MediaDocument]


def to_raw(item: Item) -> RawItem:
    return RawItem(text=item) if isinstance(item, str) else item.to_raw()


class RerankBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Item = Field(description="Text, or an object {text?, image?, video?}.")
    documents: list[Item] = Field(description="Candidates: strings or {text?, image?, video?} objects.")
    top_n: int | None = Field(default=None, ge=1, description="Return only the best N results.")
    return_documents: bool = Field(default=False, description="Echo each document in its result.")
    instruction: StrictStr | None = Field(default=None, description="Task instruction for the model.")
    model: StrictStr | None = Field(
        default=None, description="Pin a loaded version id; omitted = the traffic policy decides."
    )


class CompareBody(RerankBody):
    versions: list[StrictStr] = Field(min_length=2, max_length=2, description="Two version ids.")


class RerankResultItem(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResultItem]
    usage: dict[str, Any]


class CompareResponse(BaseModel):
    a: RerankResponse
    b: RerankResponse
    changes: list[dict[str, Any]]


class ErrorResponse(BaseModel):
    error: dict[str, Any]


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
