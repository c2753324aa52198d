"""Observability: HTTP status series (client errors counted), process metrics, no *_created
families, OpenMetrics negotiation, the access log in text and JSON."""
from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient

from reranker.logs import JsonFormatter
from tests.conftest import AUTH


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_client_errors_are_counted_by_status_and_route(client: TestClient) -> None:
    before = client.get("/metrics").text
    client.post("/v1/rerank", json={"query": "", "documents": ["a"]})  # 422
    client.get("/v1/models/no-such")  # 404
    client.get("/admin/status")  # 401
    client.get("/v1/rerank")  # 405
    client.post("/v1/rerank", json={"query": "a", "documents": [{"image": "/etc/passwd"}]})  # 403
    after = client.get("/metrics").text
    for route, status in [("/v1/rerank", "422"), ("/v1/models/{model_id}", "404"), ("/admin/status", "401"),
                          ("unmatched", "405"), ("/v1/rerank", "403")]:
        name = "reranker_http_requests_total"
        method = "GET" if status in ("404", "401", "405") else "POST"
        delta = sample(after, name, method=method, route=route, status=status) - \
            sample(before, name, method=method, route=route, status=status)
        assert delta == 1, (route, status)
    assert sample(after, "reranker_http_request_duration_seconds_count", method="POST", route="/v1/rerank") > 0


def test_process_metrics_and_no_created_families(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert sample(text, "process_resident_memory_bytes") > 0
    assert sample(text, "process_cpu_seconds_total") > 0
    assert "python_info" in text
    assert "_created" not in text


def test_openmetrics_is_negotiated(client: TestClient) -> None:
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF") and "_created" not in om.text


def test_access_log_one_record_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        client.post("/v1/rerank", json={"query": "a cat", "documents": ["a tabby cat"]},
                    headers={"X-Request-Id": "log-test-1"})
    [record] = [r for r in caplog.records if r.name == "uvicorn.access" and "log-test-1" in r.getMessage()]
    fields = record.http  # type: ignore[attr-defined]
    assert fields["method"] == "POST" and fields["path"] == "/v1/rerank" and fields["status"] == 200
    assert fields["request_id"] == "log-test-1" and fields["version"] == "mini-v1" and fields["latency_ms"] > 0
    line = json.loads(JsonFormatter().format(record))
    assert {"ts", "level", "logger", "message", "method", "path", "status", "latency_ms", "request_id",
            "version"} <= set(line)
    assert line["logger"] == "uvicorn.access"


def test_admin_reads_are_counted_too(client: TestClient) -> None:
    before = sample(client.get("/metrics").text, "reranker_http_requests_total",
                    method="GET", route="/admin/status", status="200")
    assert client.get("/admin/status", headers=AUTH).status_code == 200
    after = sample(client.get("/metrics").text, "reranker_http_requests_total",
                   method="GET", route="/admin/status", status="200")
    assert after == before + 1
