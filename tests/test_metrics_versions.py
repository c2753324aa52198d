"""Issue 11, item 3: an unloaded version leaves /metrics (every per-version series) and the
operator's list of loaded versions; the versions still in memory keep theirs."""
from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AUTH, CANDIDATE, STABLE, load_version, reset_service
from ui.render_status import versions_html

PER_VERSION = ("reranker_requests", "reranker_request_duration_seconds", "reranker_documents_scored",
               "reranker_traffic_share_ratio", "reranker_model_memory_bytes")


def versions_in_metrics(client: TestClient) -> dict[str, set[str]]:
    """Metric family name -> the versions it has a series for (shadow pairs count both sides)."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if not family.name.startswith("reranker_"):
            continue
        for sample in family.samples:
            for label in ("version", "primary", "shadow"):
                if label in sample.labels:
                    found.setdefault(family.name, set()).add(sample.labels[label])
    return found


def test_an_unloaded_version_leaves_metrics_and_the_operator_list(client: TestClient, service: Any) -> None:
    reset_service(service)
    try:
        load_version(service, CANDIDATE)
        response = client.put("/admin/traffic", headers=AUTH,
                              json={"weights": {STABLE: 50, CANDIDATE: 50}, "sticky": False})
        assert response.status_code == 200, response.text
        served = set()
        for i in range(40):
            answer = client.post("/v1/rerank", json={"query": f"a cat {i}", "documents": ["a cat", "a car"]})
            assert answer.status_code == 200, answer.text
            served.add(answer.headers["X-Model-Version"])
            if served == {STABLE, CANDIDATE}:
                break
        assert served == {STABLE, CANDIDATE}
        shadowed = {"weights": {STABLE: 100}, "sticky": False, "shadow": {"version": CANDIDATE}}
        assert client.put("/admin/traffic", headers=AUTH, json=shadowed).status_code == 200
        deadline = time.monotonic() + 60
        while CANDIDATE not in versions_in_metrics(client).get("reranker_shadow_agreement_ratio", set()):
            assert time.monotonic() < deadline, "no shadow copy reached /metrics"
            answer = client.post("/v1/rerank", json={"query": f"a shadowed cat {time.monotonic()}",
                                                     "documents": ["a cat", "a car"]})
            assert answer.status_code == 200, answer.text
        before = versions_in_metrics(client)
        for name in (*PER_VERSION, "reranker_shadow_agreement_ratio"):
            assert CANDIDATE in before.get(name, set()), (name, before.get(name))
    finally:
        reset_service(service)  # all traffic back on the stable version, the candidate unloaded

    assert service.registry.get(CANDIDATE).state.value == "retired"
    after = versions_in_metrics(client)
    assert all(CANDIDATE not in versions for versions in after.values()), after
    for name in ("reranker_traffic_share_ratio", "reranker_model_memory_bytes"):
        assert after[name] == {STABLE}, (name, after[name])
    table = versions_html(service.versions())
    assert f'data-version="{STABLE}"' in table and CANDIDATE not in table
