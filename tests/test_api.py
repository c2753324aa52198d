"""The public REST API over a real service on the mini model: answers, health, metrics, bad input."""
from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any, Iterator

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    IMAGES, STABLE, TEST_LIMITS, api_client, data_uri, image_uri, video_uri,
)

CAT_DOCS = ["a rocket launching into space", "a tabby cat resting", "a cup of espresso"]


def rerank(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/rerank", json=body)


def assert_error(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type"}
    for word in words:
        assert word in error["message"], error["message"]
    return error


def assert_ranked(answer: dict[str, Any], n: int) -> list[float]:
    assert set(answer) == {"id", "model", "results", "usage"}
    scores = [r["relevance_score"] for r in answer["results"]]
    assert len(scores) == n
    assert scores == sorted(scores, reverse=True)
    return scores


def tiny_video(seconds: int, fps: int = 1, size: int = 16) -> bytes:
    """An MPEG-4 clip of `seconds` at `fps`, cheap to encode at any length."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(seconds * fps):
            frame = np.full((size, size, 3), (i * 7) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


# ---- answers ---------------------------------------------------------------------------------
def test_text_rerank_shape_order_and_header(client: TestClient) -> None:
    # a query no other test sends: the pairs are computed here, never answered from the score cache
    response = rerank(client, query="a cat (test_text_rerank_shape_order_and_header)", documents=CAT_DOCS)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_ranked(answer, 3)
    assert answer["model"] == STABLE == response.headers["X-Model-Version"]
    assert answer["id"] == response.headers["X-Request-Id"]
    assert answer["results"][0]["index"] == 1
    assert sorted(r["index"] for r in answer["results"]) == [0, 1, 2]
    assert all("document" not in r for r in answer["results"])
    assert answer["usage"]["documents"] == 3
    assert answer["usage"]["latency_ms"] >= answer["usage"]["model_ms"] > 0


def test_top_n_return_documents_and_instruction(client: TestClient) -> None:
    docs = [CAT_DOCS[0], {"text": CAT_DOCS[1]}, {"text": "an espresso", "image": "images/coffee.jpg"}]
    answer = rerank(client, query="a cat", documents=docs, top_n=2, return_documents=True,
                    instruction="Find the document about the animal in the query.").json()
    assert_ranked(answer, 2)
    top = answer["results"][0]
    assert top["index"] == 1 and top["document"] == {"text": CAT_DOCS[1]}
    echoed = {r["index"]: r["document"] for r in answer["results"]}
    for index, document in echoed.items():
        assert document == (docs[index] if isinstance(docs[index], dict) else {"text": docs[index]})


def test_image_data_uri_and_media_folder_path(client: TestClient) -> None:
    docs = [{"image": image_uri("rocket.jpg")}, {"image": image_uri("chelsea.jpg")},
            {"image": "images/coffee.jpg"}, {"image": str(IMAGES / "coins.jpg")}]
    answer = rerank(client, query="a cat", documents=docs).json()
    assert_ranked(answer, 4)
    assert answer["results"][0]["index"] == 1
    by_image = rerank(client, query={"image": image_uri("query_espresso.jpg")}, documents=docs).json()
    assert by_image["results"][0]["index"] == 2  # the espresso query finds the coffee picture


def test_video_data_uri_and_path(client: TestClient) -> None:
    docs = [{"video": video_uri("rocket_zoom.mp4")}, {"video": "videos/cat_pan.mp4"}, "a rocket"]
    answer = rerank(client, query="a cat", documents=docs).json()
    assert_ranked(answer, 3)
    assert answer["results"][0]["index"] == 1


def test_mixed_document_gets_one_score(client: TestClient) -> None:
    docs = [{"text": "my pet", "image": image_uri("chelsea.jpg")},
            {"text": "launch day", "image": image_uri("rocket.jpg"), "video": "videos/rocket_zoom.mp4"}]
    answer = rerank(client, query="a cat", documents=docs, return_documents=True).json()
    assert_ranked(answer, 2)
    assert [r["index"] for r in answer["results"]] == [0, 1]


def test_model_pinning(client: TestClient) -> None:
    response = rerank(client, query="a cat", documents=CAT_DOCS, model=STABLE)
    assert response.status_code == 200
    assert response.json()["model"] == response.headers["X-Model-Version"] == STABLE
    # Any other name (a client library's default model name) is served by the routed version,
    # and the reply says which version answered (README: "Model names").
    routed = rerank(client, query="a cat", documents=CAT_DOCS, model="jina-reranker-v1-base-en")
    assert routed.status_code == 200, routed.text
    assert routed.json()["model"] == routed.headers["X-Model-Version"] == STABLE


# ---- models, health, metrics, schema ----------------------------------------------------------
def test_models_lists_serving_version(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    serving = [m for m in body["data"] if m["id"] == STABLE]
    assert serving and serving[0]["state"] == "serving"
    assert serving[0]["share"] == 100 and serving[0]["stable"] is True
    assert serving[0]["backend"] == "mini" and serving[0]["bytes_in_memory"] > 0


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "stable": STABLE}


def test_readyz_is_503_before_a_model_serves(make_service: Any) -> None:
    cold = api_client(make_service(start=False))
    assert cold.get("/healthz").status_code == 200
    assert cold.get("/readyz").status_code == 503
    assert_error(cold.post("/v1/rerank", json={"query": "a", "documents": ["b"]}), 503, "no model")


def test_metrics_count_requests_per_version(client: TestClient) -> None:
    def ok_count() -> float:
        text = client.get("/metrics").text
        prefix = f'reranker_requests_total{{outcome="ok",version="{STABLE}"}} '
        return float(next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix):])

    rerank(client, query="a cat", documents=CAT_DOCS)
    before = ok_count()
    rerank(client, query="a dog", documents=CAT_DOCS)
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert ok_count() == before + 1
    for series in ("reranker_request_duration_seconds_bucket", "reranker_documents_scored_total",
                   f'reranker_traffic_share_ratio{{version="{STABLE}"}} 1.0', "reranker_model_memory_bytes"):
        assert series in response.text


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/rerank", "/v1/rerank/compare", "/v1/models", "/healthz", "/readyz", "/metrics",
                 "/admin/updates", "/admin/status", "/admin/rollout/{command}", "/admin/versions",
                 "/admin/versions/{version_id}", "/admin/traffic", "/admin/audit"):
        assert path in paths, path
    rerank_doc = paths["/v1/rerank"]["post"]
    assert {"200", "413", "422"} <= set(rerank_doc["responses"])


# ---- bad input --------------------------------------------------------------------------------
BAD_BODIES = [
    pytest.param({"query": "", "documents": ["a"]}, 422, ("query", "empty"), id="empty-query"),
    pytest.param({"query": "a cat", "documents": []}, 422, ("documents", "at least 1"), id="no-documents"),
    pytest.param({"query": "a cat", "documents": ["x"] * (TEST_LIMITS.max_documents + 1)}, 422,
                 ("documents", str(TEST_LIMITS.max_documents)), id="too-many-documents"),
    pytest.param({"query": "a cat", "documents": [{"image": data_uri(b"not an image at all", "image/png")}]},
                 422, ("documents[0].image", "decodable"), id="undecodable-image"),
    pytest.param({"query": "a cat", "documents": [{"video": data_uri(b"\0\0\0\x18ftypmp42" + b"\x07" * 4000,
                                                                    "video/mp4")}]},
                 422, ("documents[0].video", "video"), id="corrupt-video"),
    pytest.param({"query": "a cat", "documents": [{"image": "../../models/mini-v1/reranker.json"}]}, 403,
                 ("documents[0].image", "outside"), id="path-outside-media-folder"),
    pytest.param({"query": "a cat", "documents": [{"image": "/etc/passwd"}]}, 403, ("outside",),
                 id="absolute-path-outside"),
    pytest.param({"query": "a cat", "documents": [{"image": "http://example.com/cat.jpg"}]}, 422,
                 ("documents[0].image", "http"), id="http-url"),
    pytest.param({"query": "a cat", "documents": [{"image": "images/missing.jpg"}]}, 422,
                 ("missing.jpg",), id="missing-file"),
    pytest.param({"query": 5, "documents": ["a"]}, 422, ("query",), id="query-wrong-type"),
    pytest.param({"query": "a", "documents": 5}, 422, ("documents",), id="documents-not-a-list"),
    pytest.param({"query": "a", "documents": ["a"], "top_n": "two"}, 422, ("top_n",), id="top_n-string"),
    pytest.param({"query": "a", "documents": ["a"], "top_n": -1}, 422, ("top_n",), id="top_n-negative"),
    pytest.param({"query": "a", "documents": ["a"], "return_documents": "maybe"}, 422, ("return_documents",),
                 id="return_documents-not-bool"),
    pytest.param({"query": "a", "documents": ["a"], "colour": "red"}, 422, ("colour", "Extra"),
                 id="unknown-field"),
    pytest.param({"query": "a", "documents": [{"text": "a", "audio": "x"}]}, 422, ("documents[0]", "audio"),
                 id="unknown-document-field"),
    pytest.param({"documents": ["a"]}, 422, ("query", "required"), id="missing-query"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD_BODIES)
def test_bad_input_is_a_clear_4xx(client: TestClient, body: dict[str, Any], status: int,
                                  words: tuple[str, ...]) -> None:
    assert_error(client.post("/v1/rerank", json=body), status, *words)


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post("/v1/rerank", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 422, "JSON")


def test_video_over_the_length_limit(client: TestClient) -> None:
    seconds = int(TEST_LIMITS.max_video_seconds) + 10
    clip = data_uri(tiny_video(seconds), "video/mp4")
    error = assert_error(rerank(client, query="a", documents=[{"video": clip}]), 422, "max_video_seconds")
    assert error["type"] == "MediaError"
    short = data_uri(tiny_video(4, fps=2), "video/mp4")
    assert rerank(client, query="a", documents=[{"video": short}]).status_code == 200


def test_oversized_body_with_content_length(client: TestClient) -> None:
    padding = "x" * (TEST_LIMITS.max_request_bytes + 1)
    error = assert_error(rerank(client, query="a", documents=[padding]), 413, str(TEST_LIMITS.max_request_bytes))
    assert error["type"] == "PayloadTooLarge"


def test_oversized_streamed_body_without_content_length(client: TestClient) -> None:
    body = json.dumps({"query": "a", "documents": ["x" * (TEST_LIMITS.max_request_bytes + 1)]}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    response = client.post("/v1/rerank", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, str(TEST_LIMITS.max_request_bytes))
    small = json.dumps({"query": "a cat", "documents": CAT_DOCS}).encode()
    streamed = client.post("/v1/rerank", content=iter([small[:10], small[10:]]),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 200 and streamed.json()["results"][0]["index"] == 1


def test_media_item_over_the_media_limit(make_service: Any) -> None:
    limits = replace(TEST_LIMITS, max_media_bytes=10_000)
    tight = api_client(make_service(start=False, limits=limits))  # media are checked before any model runs
    for document in ({"image": image_uri("astronaut.jpg")}, {"image": "images/astronaut.jpg"}):
        error = assert_error(tight.post("/v1/rerank", json={"query": "a", "documents": [document]}), 413,
                             "documents[0].image", "max_media_bytes=10000")
        assert error["type"] == "PayloadTooLarge"


def test_server_serves_after_bad_input(client: TestClient) -> None:
    for body in ({"query": "", "documents": ["a"]}, {"query": "a", "documents": [{"image": "/etc/passwd"}]},
                 {"query": "a", "documents": [{"video": data_uri(b"junk", "video/mp4")}]}):
        assert client.post("/v1/rerank", json=body).status_code in (403, 422)
    assert rerank(client, query="a cat", documents=CAT_DOCS).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404)
