"""Token limits from the clients' fields (Cohere v2 max_tokens_per_doc, vLLM truncate_prompt_tokens,
Jina truncation), applied with the answering version's own tokenizer, over the real mini model."""
from __future__ import annotations

import threading
from typing import Any, Sequence

import pytest
from fastapi.testclient import TestClient

from reranker.content import Content, Pair
from reranker.errors import InputError
from reranker.truncation import TokenLimits, fit_documents
from tests.conftest import STABLE

QUERY = "a cat"
DOC = "a cup of espresso beside a tabby cat"  # MiniLM: a cup of es ##press ##o | beside a tab ##by cat
LONG = " ".join(["word"] * 300)  # one unit of 300 tokens: over mini's max_text_tokens (256)


@pytest.fixture(scope="module")
def mini_model(service: Any) -> Any:
    with service.registry.acquire(STABLE) as engine:
        return engine._model


def rerank(client: TestClient, path: str = "/v1/rerank", **body: Any) -> Any:
    return client.post(path, json={"query": QUERY, "documents": [DOC], **body})


def test_max_tokens_per_doc_cuts_the_document_before_scoring(client: TestClient) -> None:
    whole = rerank(client, "/v2/rerank").json()
    cut = rerank(client, "/v2/rerank", max_tokens_per_doc=6).json()
    # MiniLM reads [CLS] a cat [SEP] (4) and [CLS] a cup of es ##press ##o [SEP] (8): no cat left
    assert cut["usage"]["total_tokens"] == 4 + 8 < whole["usage"]["total_tokens"] == 4 + 13
    assert cut["results"][0]["relevance_score"] < whole["results"][0]["relevance_score"]
    same = client.post("/v2/rerank", json={"query": QUERY, "documents": ["a cup of espresso"]}).json()
    assert cut["results"][0]["relevance_score"] == pytest.approx(same["results"][0]["relevance_score"], abs=1e-6)
    roomy = rerank(client, "/v2/rerank", max_tokens_per_doc=100).json()
    assert roomy["results"][0]["relevance_score"] == whole["results"][0]["relevance_score"]


def test_truncate_prompt_tokens_holds_query_and_document_together(client: TestClient) -> None:
    cut = rerank(client, "/rerank", truncate_prompt_tokens=8).json()  # 2 query tokens + 6 of the document
    assert cut["usage"]["total_tokens"] == 4 + 8
    assert rerank(client, "/rerank", truncate_prompt_tokens=-1).json()["usage"]["total_tokens"] == 4 + 13
    score = client.post("/v1/score", json={"text_1": QUERY, "text_2": [DOC], "truncate_prompt_tokens": 8})
    assert score.status_code == 200 and score.json()["usage"]["total_tokens"] == 4 + 8


@pytest.mark.parametrize("value, words", [(2, "query alone has 2 tokens"), (0, "got 0")])
def test_a_prompt_limit_the_query_fills_is_refused(client: TestClient, value: int, words: str) -> None:
    answer = rerank(client, "/rerank", truncate_prompt_tokens=value)
    assert answer.status_code == 422 and words in answer.json()["detail"]


def test_truncation_false_refuses_what_the_model_would_cut(client: TestClient) -> None:
    body = {"query": QUERY, "documents": [DOC, LONG]}
    refused = client.post("/rerank", json={**body, "truncation": False})
    assert refused.status_code == 422
    assert "documents[1]" in refused.json()["detail"] and "46 tokens" in refused.json()["detail"]
    assert client.post("/rerank", json={**body, "truncation": True}).status_code == 200
    assert client.post("/rerank", json={"query": QUERY, "documents": [DOC], "truncation": False}).status_code == 200


class NoTokenizer:
    pass


def test_a_model_that_cannot_count_tokens_says_so() -> None:
    with pytest.raises(InputError, match="cannot count tokens"):
        fit_documents(NoTokenizer(), "fake", Content(text="q"), [Content(text="d")], TokenLimits(document_tokens=3))
    docs = [Content(text="d")]
    assert fit_documents(NoTokenizer(), "fake", Content(text="q"), docs, TokenLimits()) == docs


def test_cut_text_keeps_the_original_characters(mini_model: Any) -> None:
    text = "Ünïcode  spacing, and punctuation!  then more words here"
    for n in range(1, 12):
        prefix = mini_model.cut_text(text, n)
        assert text.startswith(prefix) and mini_model.text_tokens(prefix) <= n
    assert mini_model.cut_text(text, 1000) == text


def test_measuring_while_the_model_scores_is_safe(mini_model: Any) -> None:
    """The limiter's tokenizer is its own copy: measuring on request threads while score() runs
    (the original tokenizer, with its truncation settings) never trips over shared state."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def measure() -> None:
        try:
            while not stop.is_set():
                assert mini_model.text_tokens(LONG) == 300
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=measure) for _ in range(3)]
    for thread in threads:
        thread.start()
    pairs: Sequence[Pair] = [Pair(Content(text=f"q {i}"), Content(text=LONG + f" {i}")) for i in range(40)]
    try:
        for start in range(0, 40, 8):
            mini_model.score(pairs[start:start + 8])
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors, errors
