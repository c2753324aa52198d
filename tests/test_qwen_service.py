"""The real Qwen3-VL backend behind the whole service: REST in, scores out (tiny checkpoint, CPU)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import api_client, build_service, make_settings


@pytest.fixture(scope="module")
def qwen_client(tiny_qwen_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    service = build_service(make_settings(tmp_path_factory.mktemp("qwen-data"), model=str(tiny_qwen_dir)))
    try:
        yield api_client(service)
    finally:
        service.close()


def test_serves_text_image_video_and_mixed_documents(qwen_client) -> None:
    body = {"query": "a cat", "documents": [
        "a tabby cat asleep", {"image": "images/chelsea.jpg"},
        {"video": "videos/cat_pan.mp4"}, {"text": "a photo", "image": "images/coffee.jpg"}]}
    response = qwen_client.post("/v1/rerank", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert response.headers["X-Model-Version"] == data["model"]
    assert sorted(r["index"] for r in data["results"]) == [0, 1, 2, 3]  # one score per document
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in data["results"])
    scores = [r["relevance_score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)


def test_reports_the_qwen_backend(qwen_client) -> None:
    [model] = qwen_client.get("/v1/models").json()["data"]
    assert (model["backend"], model["dtype"], model["device"]) == ("qwen3-vl", "float32", "cpu")


def test_an_image_token_in_text_is_a_clear_4xx(qwen_client) -> None:
    response = qwen_client.post("/v1/rerank", json={"query": "x", "documents": ["<|image_pad|>"]})
    assert 400 <= response.status_code < 500
    assert "image_pad" in response.json()["error"]["message"]


def test_usage_counts_the_qwen_prompt_tokens(qwen_client) -> None:
    """usage.total_tokens is the Qwen tokenizer's prompt length (text plus image tokens), the same
    when the answer comes from the score cache."""
    short = qwen_client.post("/v1/rerank", json={"query": "a cat", "documents": ["a cat"]}).json()
    longer = qwen_client.post("/v1/rerank", json={"query": "a cat", "documents": ["a cat " * 40]}).json()
    image = qwen_client.post("/v1/rerank", json={"query": "a cat", "documents": [{"image": "images/chelsea.jpg"}]}).json()
    again = qwen_client.post("/v1/rerank", json={"query": "a cat", "documents": ["a cat " * 40]}).json()
    assert 20 < short["usage"]["total_tokens"] < longer["usage"]["total_tokens"]
    assert longer["usage"]["total_tokens"] - short["usage"]["total_tokens"] >= 39  # one token per extra "a cat"
    assert image["usage"]["total_tokens"] > short["usage"]["total_tokens"]
    assert again["usage"]["total_tokens"] == longer["usage"]["total_tokens"]


def test_max_tokens_per_doc_cuts_with_the_qwen_tokenizer(qwen_client) -> None:
    """The document's text is cut to N Qwen tokens: the prompt shrinks by exactly what was cut."""
    body = {"query": "a cat", "documents": ["a cat " * 40]}
    whole = qwen_client.post("/v2/rerank", json=body).json()["usage"]["total_tokens"]
    cut = qwen_client.post("/v2/rerank", json={**body, "max_tokens_per_doc": 10}).json()["usage"]["total_tokens"]
    plain = qwen_client.post("/v2/rerank", json={"query": "a cat", "documents": [("a cat " * 5).strip()]}).json()
    assert cut < whole and cut == plain["usage"]["total_tokens"]  # "a cat" x 5 is 10 tokens
