"""Translation between the rerank dialects clients speak (Cohere v1/v2, Jina, vLLM) and the
service's RankRequest / RankResult. The routes in reranker.api stay thin calls into these."""
from __future__ import annotations

import json
import math
from typing import Any, Iterable

from fastapi import Request

from reranker.api_models import DocumentObject, RerankBody, ScoreBody, to_raw
from reranker.errors import InputError
from reranker.service.types import Caller, RankRequest, RankResult, RawItem
from reranker.truncation import TokenLimits

SEARCH_UNIT_DOCUMENTS = 100  # Cohere bills one search unit per query with up to 100 documents


def caller(http: Request, user: str | None, region: str | None) -> Caller:
    return Caller(user_key=user, region=region, client_ip=http.client.host if http.client else None)


def rank_request(body: RerankBody, who: Caller) -> RankRequest:
    documents = tuple(document_raw(doc, i, body.rank_fields) for i, doc in enumerate(body.document_list()))
    return RankRequest(
        query=to_raw(body.query),
        documents=documents,
        top_n=body.top_n or None,  # 0 means all, as vLLM and Jina read it
        instruction=body.instruction,
        caller=who,
        limits=token_limits(body.max_tokens_per_doc, body.truncate_prompt_tokens, body.truncation),
    )


def token_limits(max_tokens_per_doc: int | None, truncate_prompt_tokens: int | None,
                 truncation: bool | None) -> TokenLimits | None:
    """The clients' token fields as one TokenLimits (None when none is set):
    Cohere v2 `max_tokens_per_doc` cuts each document's text to N tokens; vLLM
    `truncate_prompt_tokens` N cuts the document so query + document text hold N tokens (-1: the
    model's own limit); Jina `truncation: false` refuses a pair the model would cut."""
    if truncate_prompt_tokens == 0:
        raise InputError("truncate_prompt_tokens must be -1 (the model's limit) or a positive token count, got 0")
    pair = truncate_prompt_tokens if truncate_prompt_tokens and truncate_prompt_tokens > 0 else None
    limits = TokenLimits(document_tokens=max_tokens_per_doc, pair_tokens=pair, refuse_over_limit=truncation is False)
    return None if limits.is_default() else limits


def pinned_version(requested: str | None, known: Iterable[str]) -> str | None:
    """The rule for `model`: a known version id pins that version; any other name (a client
    library's default such as 'rerank-v3.5' or 'jina-reranker-v1-base-en') is served by the
    traffic policy, and the reply's `model` names the version that answered."""
    if requested is None:
        return None
    return requested if requested in set(known) else None


def document_raw(doc: str | DocumentObject, index: int, rank_fields: list[str] | None) -> RawItem:
    """One document; with rank_fields, the named fields of an object become 'name: value' lines."""
    if isinstance(doc, str):
        return RawItem(text=doc)
    extras = doc.model_extra or {}
    if rank_fields is None:
        if extras:
            raise InputError(
                f"documents[{index}] has fields {sorted(extras)} besides text, image and video; "
                "name the fields to score in rank_fields"
            )
        return doc.to_raw()
    values: dict[str, Any] = {**({"text": doc.text} if doc.text is not None else {}), **extras}
    lines = [f"{name}: {_as_text(values[name])}" for name in rank_fields if values.get(name) is not None]
    media = doc.to_raw()
    if not lines and not media.images and not media.videos:
        raise InputError(f"documents[{index}] has none of the rank_fields {rank_fields}")
    return RawItem(text="\n".join(lines) or None, images=media.images, videos=media.videos)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def answer(result: RankResult, body: RerankBody, echo_by_default: bool) -> dict[str, Any]:
    """The reply of /v1/rerank and /rerank: {id, model, results, usage}."""
    docs = body.document_list()
    echo = body.return_documents if body.return_documents is not None else echo_by_default
    return {
        "id": result.request_id,
        "model": result.version,
        "results": [
            {
                "index": r.index,
                "relevance_score": r.score,
                **({"document": _echo(docs[r.index])} if echo else {}),
            }
            for r in result.results
        ],
        "usage": usage(result),
    }


def usage(result: RankResult) -> dict[str, Any]:
    return {
        "total_tokens": int(result.usage.get("total_tokens", 0)),
        "documents": result.n_documents,
        "latency_ms": round(result.latency_ms, 3),
        "model_ms": float(result.usage.get("model_ms", 0.0)),
    }


def v2_answer(result: RankResult, body: RerankBody) -> dict[str, Any]:
    """Cohere v2: the same results plus `meta` (api version, billed search units, input tokens)."""
    reply = answer(result, body, echo_by_default=False)
    reply["meta"] = {
        "api_version": {"version": "2"},
        "billed_units": {"search_units": max(1, math.ceil(result.n_documents / SEARCH_UNIT_DOCUMENTS))},
        "tokens": {"input_tokens": reply["usage"]["total_tokens"]},
    }
    return reply


def _echo(item: str | DocumentObject) -> dict[str, Any]:
    return {"text": item} if isinstance(item, str) else item.model_dump(exclude_none=True)


def score_request(body: ScoreBody, who: Caller) -> RankRequest:
    query = body.text_1 if isinstance(body.text_1, str) else body.text_1[0]
    texts = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    return RankRequest(query=RawItem(text=query), documents=tuple(RawItem(text=t) for t in texts), caller=who,
                       limits=token_limits(None, body.truncate_prompt_tokens, None))


def score_answer(result: RankResult, created: int) -> dict[str, Any]:
    """vLLM's score reply: one score per text_2 item, in request order."""
    by_index = {r.index: r.score for r in result.results}
    tokens = int(result.usage.get("total_tokens", 0))
    return {
        "id": result.request_id,
        "object": "list",
        "created": created,
        "model": result.version,
        "data": [{"index": i, "object": "score", "score": by_index[i]} for i in range(result.n_documents)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
