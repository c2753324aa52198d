"""The rerank dialects other clients speak (Cohere v1/v2, Jina, vLLM), over the real mini model.

The real client libraries are driven against a real server in tests/clients; this file pins the
request and answer shapes field by field.
"""
from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import IMAGES, STABLE, image_uri

CAT_DOCS = ["a rocket launching into space", "a tabby cat resting", "a cup of espresso"]


def post(client: TestClient, path: str, **body: Any) -> Any:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_cohere_v2_shape(client: TestClient) -> None:
    answer = post(client, "/v2/rerank", model="rerank-v3.5", query="a cat", documents=CAT_DOCS, top_n=2)
    assert answer["results"][0]["index"] == 1
    assert len(answer["results"]) == 2 and all("document" not in r for r in answer["results"])
    meta = answer["meta"]
    assert meta["api_version"] == {"version": "2"}
    assert meta["billed_units"] == {"search_units": 1}
    assert meta["tokens"]["input_tokens"] == answer["usage"]["total_tokens"] > 0
    assert answer["model"] == STABLE  # the client's model name is served by the routed version


def test_jina_vllm_alias_echoes_documents_by_default(client: TestClient) -> None:
    answer = post(client, "/rerank", model="jina-reranker-v1-base-en", query="a cat", documents=CAT_DOCS)
    assert {r["index"]: r["document"] for r in answer["results"]} == {i: {"text": d} for i, d in enumerate(CAT_DOCS)}
    quiet = post(client, "/rerank", query="a cat", documents=CAT_DOCS, return_documents=False)
    assert all("document" not in r for r in quiet["results"])
    v1 = post(client, "/v1/rerank", query="a cat", documents=CAT_DOCS)
    assert all("document" not in r for r in v1["results"])


def test_usage_total_tokens_are_the_minilm_token_counts(client: TestClient) -> None:
    short = post(client, "/v1/rerank", query="a cat", documents=["a dog"])["usage"]["total_tokens"]
    longer = post(client, "/v1/rerank", query="a cat", documents=["a dog and a big brown horse"])["usage"]["total_tokens"]
    two = post(client, "/v1/rerank", query="a cat", documents=["a dog", "a dog"])["usage"]["total_tokens"]
    # MiniLM reads [CLS] a cat [SEP] and [CLS] a dog [SEP]: 4 + 4 tokens
    assert short == 8
    assert longer == 4 + 9
    assert two == 2 * short  # a duplicate document is counted (and cached pairs too)


@pytest.mark.parametrize("top_n", [0, None])
def test_top_n_zero_or_absent_means_all(client: TestClient, top_n: int | None) -> None:
    body: dict[str, Any] = {"query": "a cat", "documents": CAT_DOCS}
    if top_n is not None:
        body["top_n"] = top_n
    assert len(post(client, "/v1/rerank", **body)["results"]) == 3


def test_other_servers_fields_are_accepted(client: TestClient) -> None:
    answer = post(client, "/v1/rerank", query="a cat", documents=CAT_DOCS, max_chunks_per_doc=10,
                  max_tokens_per_doc=512, truncation=True, truncate_prompt_tokens=-1, priority=5)
    assert answer["results"][0]["index"] == 1


def test_rank_fields_score_the_named_fields(client: TestClient) -> None:
    docs = [{"title": "a tabby cat resting", "body": "a cup of espresso"},
            {"title": "a cup of espresso", "body": "a tabby cat resting"}]
    by_title = post(client, "/v1/rerank", query="a cat", documents=docs, rank_fields=["title"], return_documents=True)
    by_body = post(client, "/v1/rerank", query="a cat", documents=docs, rank_fields=["body"])
    assert by_title["results"][0]["index"] == 0 and by_body["results"][0]["index"] == 1
    assert by_title["results"][0]["document"] == docs[0]  # the object is echoed whole
    missing = client.post("/v1/rerank", json={"query": "a cat", "documents": [{"author": "x"}], "rank_fields": ["title"]})
    assert missing.status_code == 422 and "rank_fields" in missing.json()["detail"]


def test_a_documents_string_is_one_document(client: TestClient) -> None:
    answer = post(client, "/v1/rerank", query="a cat", documents="a tabby cat resting", return_documents=True)
    assert answer["results"] == [{"index": 0, "relevance_score": answer["results"][0]["relevance_score"],
                                  "document": {"text": "a tabby cat resting"}}]


def test_bare_base64_image_equals_data_uri(client: TestClient) -> None:
    bare = base64.b64encode((IMAGES / "chelsea.jpg").read_bytes()).decode()
    a = post(client, "/v1/rerank", query="a cat", documents=[{"image": bare}, "a cup of espresso"])
    b = post(client, "/v1/rerank", query="a cat", documents=[{"image": image_uri("chelsea.jpg")}, "a cup of espresso"])
    assert a["results"] == b["results"]


def test_score_api(client: TestClient) -> None:
    for path in ("/v1/score", "/score"):
        answer = post(client, path, model="BAAI/bge-reranker-v2-m3", text_1="a cat", text_2=CAT_DOCS)
        assert answer["object"] == "list" and answer["model"] == STABLE
        assert [d["index"] for d in answer["data"]] == [0, 1, 2]  # request order, not sorted
        scores = [d["score"] for d in answer["data"]]
        assert max(scores) == scores[1]
        assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] > 0
    single = post(client, "/score", text_1=["a cat"], text_2="a tabby cat")
    assert len(single["data"]) == 1


def test_errors_carry_detail_beside_error(client: TestClient) -> None:
    response = client.post("/v1/rerank", json={"query": "a cat", "documents": ["a"], "top_n": -1})
    body = response.json()
    assert response.status_code == 422
    assert body["detail"] == body["error"]["message"] and "top_n" in body["detail"]


def test_request_id_is_kept_and_echoed(client: TestClient) -> None:
    kept = client.post("/v1/rerank", json={"query": "a cat", "documents": CAT_DOCS},
                       headers={"X-Request-Id": "trace-abc.123"})
    assert kept.headers["X-Request-Id"] == "trace-abc.123" == kept.json()["id"]
    made = client.get("/healthz")
    assert len(made.headers["X-Request-Id"]) == 32
    odd = client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert odd.headers["X-Request-Id"] != "bad id\twith spaces"
    failed = client.post("/v1/rerank", json={"query": ""}, headers={"X-Request-Id": "r-1"})
    assert failed.status_code == 422 and failed.headers["X-Request-Id"] == "r-1"


def test_model_by_id_and_head_probes(client: TestClient) -> None:
    one = client.get(f"/v1/models/{STABLE}")
    assert one.status_code == 200 and one.json()["id"] == STABLE and one.json()["state"] == "serving"
    missing = client.get("/v1/models/no-such-model")
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]
    for path in ("/healthz", "/readyz"):
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""


def test_wrong_methods_are_405_with_allow(client: TestClient) -> None:
    response = client.get("/v1/rerank")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "MethodNotAllowed"
    assert client.get("/admin/no-such").status_code == 404
