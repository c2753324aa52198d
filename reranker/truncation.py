"""Token limits a request may set, and how a version applies them to documents.

The REST API maps client fields onto one `TokenLimits` (Cohere v2 `max_tokens_per_doc`, vLLM
`truncate_prompt_tokens`, Jina `truncation`). The engine applies them with the answering
version's own tokenizer, before the cache key is taken, so a cut document is scored (and cached)
as the text the model really read. Only text is cut: images and video frames are never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

from reranker.content import Content
from reranker.errors import InputError


@dataclass(frozen=True)
class TokenLimits:
    document_tokens: int | None = None  # at most this many tokens of each document's text
    pair_tokens: int | None = None  # query text + document text at most this many tokens
    refuse_over_limit: bool = False  # refuse (400) what the model would cut, instead of cutting it

    def is_default(self) -> bool:
        return self.document_tokens is None and self.pair_tokens is None and not self.refuse_over_limit


@runtime_checkable
class TextLimiter(Protocol):
    """A backend that can measure and cut text with its tokenizer."""

    def text_tokens(self, text: str) -> int: ...

    def cut_text(self, text: str, max_tokens: int) -> str: ...

    def dropped_tokens(self, query_text: str, document_text: str) -> int:
        """How many text tokens the model itself would cut from this pair (0: it reads all)."""
        ...


def fit_documents(model: object, model_id: str, query: Content, documents: Sequence[Content],
                  limits: TokenLimits) -> list[Content]:
    """The documents as the model should read them under `limits` (cut where a limit says so).

    Raises InputError naming the document when `refuse_over_limit` is set and the model would cut
    it, when the query alone fills `pair_tokens`, or when the model cannot measure tokens."""
    if limits.is_default():
        return list(documents)
    if not isinstance(model, TextLimiter):
        raise InputError(f"model {model_id} cannot count tokens, so it cannot apply token limits; "
                         "send the request without them")
    query_text = query.text or ""
    budget = limits.document_tokens
    if limits.pair_tokens is not None:
        query_tokens = model.text_tokens(query_text) if query_text else 0
        if query_tokens >= limits.pair_tokens:
            raise InputError(f"the query alone has {query_tokens} tokens, not less than the prompt limit of "
                             f"{limits.pair_tokens}; raise the limit or shorten the query")
        left = limits.pair_tokens - query_tokens
        budget = left if budget is None else min(budget, left)
    fitted = []
    for index, document in enumerate(documents):
        text = document.text or ""
        if text and budget is not None and model.text_tokens(text) > budget:
            document = replace(document, text=model.cut_text(text, budget))
            text = document.text or ""
        if limits.refuse_over_limit and text:
            dropped = model.dropped_tokens(query_text, text)
            if dropped:
                raise InputError(f"documents[{index}] is over model {model_id}'s input limit by {dropped} "
                                 "tokens and truncation is off; shorten it or send truncation: true")
        fitted.append(document)
    return fitted
