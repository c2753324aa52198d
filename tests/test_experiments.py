"""Experiments over the API with two real mini versions: a sticky 50/50 split, region rules,
a shadow run, the experiment report and its decision, and side-by-side compare."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AUTH, CANDIDATE, STABLE, image_uri, load_version, reset_service
from reranker.control.requestlog import recent_requests
from reranker.control.requeststats import version_stats

QUERY = "a cat sleeping"
DOCS = ["a tabby cat asleep on a sofa", "a rocket on the launch pad", "fresh espresso in a cup",
        "an old wall clock", "a kitten playing with wool", "coins on a table"]
VERDICTS = {"promote", "keep stable", "inconclusive"}
MARKS = {"up", "down", "same", "new", "dropped"}


@pytest.fixture(scope="module")
def two_versions(service: Any) -> Iterator[Any]:
    """The shared service with mini-v2 loaded beside mini-v1; back to mini-v1 alone afterwards."""
    reset_service(service)
    load_version(service, CANDIDATE)
    yield service
    reset_service(service)
    assert service.usable_versions() == [STABLE]
    assert service.traffic().weights == {STABLE: 100}


def put_traffic(client: TestClient, policy: dict[str, Any]) -> dict[str, Any]:
    response = client.put("/admin/traffic", json=policy, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def rank(client: TestClient, user: str | None = None, region: str | None = None,
         documents: list[Any] | None = None) -> Any:
    headers = {k: v for k, v in (("X-User-Id", user), ("X-Region", region)) if v is not None}
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": documents or DOCS}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == response.json()["model"]
    return response


def requests_counted(client: TestClient) -> Counter[str]:
    """reranker_requests_total{outcome="ok"} per version, from /metrics."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "reranker_requests_total" and sample.labels["outcome"] == "ok":
                counts[sample.labels["version"]] = int(sample.value)
    return counts


def test_sticky_fifty_fifty_and_region_rule(client: TestClient, two_versions: Any) -> None:
    service = two_versions
    since = service.clock.now()
    metrics_before = requests_counted(client)
    traffic = put_traffic(client, {"weights": {STABLE: 50, CANDIDATE: 50}, "sticky": True})
    assert traffic["weights"] == {STABLE: 50, CANDIDATE: 50} and traffic["primary"] == STABLE
    shares = {m["id"]: (m["state"], m["share"]) for m in client.get("/v1/models").json()["data"]}
    assert shares[STABLE] == ("serving", 50) and shares[CANDIDATE] == ("serving", 50)

    served: dict[str, str] = {}
    for i in range(60):
        served[f"user-{i}"] = rank(client, user=f"user-{i}").headers["X-Model-Version"]
    split = Counter(served.values())
    assert set(split) == {STABLE, CANDIDATE}
    assert min(split.values()) >= 15, split
    for user in list(served)[:10]:  # the same user always gets the same version
        assert rank(client, user=user).headers["X-Model-Version"] == served[user]

    put_traffic(client, {"weights": {STABLE: 50, CANDIDATE: 50}, "sticky": True,
                         "rules": [{"region": "eu", "version": CANDIDATE}]})
    on_stable = [u for u, v in served.items() if v == STABLE][:5]
    for user in on_stable:
        assert rank(client, user=user, region="eu").headers["X-Model-Version"] == CANDIDATE
        assert rank(client, user=user, region="us").headers["X-Model-Version"] == STABLE
    assert rank(client, region="EU").headers["X-Model-Version"] == CANDIDATE

    sent = Counter(served.values())
    sent.update(served[u] for u in list(served)[:10])
    sent.update({CANDIDATE: len(on_stable) + 1, STABLE: len(on_stable)})
    assert service.request_log.flush(timeout_s=10.0)
    logged = {s.version: s.count for s in version_stats(service.store, since)}
    metrics_after = requests_counted(client)
    counted = {v: metrics_after[v] - metrics_before.get(v, 0) for v in (STABLE, CANDIDATE)}
    assert logged == counted == dict(sent)

    rows = recent_requests(service.store, limit=sum(sent.values()))
    assert all(r.version == CANDIDATE for r in rows if r.region and r.region.lower() == "eu")
    by_user: dict[str | None, set[str]] = {}
    for row in rows:
        if row.region is None:
            by_user.setdefault(row.user_hash, set()).add(row.version)
    assert all(len(versions) == 1 for versions in by_user.values())


def wait_for_shadow_rows(service: Any, request_ids: set[str], timeout_s: float = 30.0) -> list[Any]:
    """Shadow copies run in the background; their log rows appear once both answers are in."""
    deadline = time.monotonic() + timeout_s
    while True:
        service.request_log.flush(timeout_s=5.0)
        rows = [r for r in recent_requests(service.store, limit=200) if r.request_id in request_ids]
        if len(rows) == len(request_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_shadow_run_report_and_decision(client: TestClient, two_versions: Any) -> None:
    service = two_versions
    put_traffic(client, {"weights": {STABLE: 100}, "shadow": {"version": CANDIDATE}})
    states = {m["id"]: (m["state"], m["share"]) for m in client.get("/v1/models").json()["data"]}
    assert states[CANDIDATE] == ("serving", 0)
    documents = [DOCS, DOCS[::-1], DOCS[:3] + [{"image": image_uri("chelsea.jpg")}], DOCS[2:], DOCS[1:5]]
    ids = set()
    for i, docs in enumerate(documents):
        response = rank(client, user=f"shadow-user-{i}", documents=docs)
        assert response.headers["X-Model-Version"] == STABLE
        ids.add(response.json()["id"])

    rows = wait_for_shadow_rows(service, ids)
    assert len(rows) == len(ids)
    for row in rows:
        assert row.version == STABLE and row.shadow_version == CANDIDATE
        assert 0.0 <= row.shadow_agreement <= 1.0
        assert row.top_shadow is not None and sorted(row.top_shadow) == sorted(row.top_primary)

    report = client.get("/admin/experiments", headers=AUTH).json()  # the same report the tab shows
    live = next(s for s in report["shadow_live"] if (s["primary"], s["shadow"]) == (STABLE, CANDIDATE))
    assert live["requests"] >= len(ids)
    assert 0.0 <= live["top_k_overlap"] <= 1.0 and -1.0 <= live["rank_correlation"] <= 1.0
    logged = next(s for s in report["shadow"] if (s["version"], s["shadow_version"]) == (STABLE, CANDIDATE))
    assert logged["count"] >= len(ids) and 0.0 <= logged["mean_agreement"] <= 1.0
    assert {r["version"] for r in report["versions"]} >= {STABLE, CANDIDATE}
    assert set(report["scores"]) >= {STABLE, CANDIDATE}

    decision = report["decision"]
    assert decision["verdict"] in VERDICTS
    assert (decision["stable"], decision["candidate"]) == (STABLE, CANDIDATE)
    criteria = {row["criterion"] for row in decision["rows"]}
    assert {"latency change (median)", "quality change (NDCG@5, labelled set)", "error rate change (vs stable)"} <= criteria
    for row in decision["rows"]:
        assert row["passed"] in (True, False, None) and row["threshold"]
    failed = any(row["passed"] is False for row in decision["rows"])
    assert (decision["verdict"] == "keep stable") == failed

    agreement = [s for f in text_string_to_metric_families(client.get("/metrics").text)
                 for s in f.samples if s.name == "reranker_shadow_agreement_ratio_count"]
    assert any(s.labels == {"primary": STABLE, "shadow": CANDIDATE} and s.value >= len(ids) for s in agreement)


def test_compare_two_versions(client: TestClient, two_versions: Any) -> None:
    documents = DOCS + [{"image": image_uri("chelsea.jpg")}, {"image": "images/rocket.jpg"}]
    body = {"query": QUERY, "documents": documents, "versions": [STABLE, CANDIDATE]}
    response = client.post("/v1/rerank/compare", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["a"]["model"], answer["b"]["model"]) == (STABLE, CANDIDATE)
    for side in ("a", "b"):
        scores = [r["relevance_score"] for r in answer[side]["results"]]
        assert len(scores) == len(documents) and scores == sorted(scores, reverse=True)
        assert answer[side]["usage"]["latency_ms"] > 0 and answer[side]["id"]
    assert answer["a"]["id"] != answer["b"]["id"]

    changes = answer["changes"]
    assert [c["index"] for c in changes] == [r["index"] for r in answer["b"]["results"]]
    rank_a = {r["index"]: i + 1 for i, r in enumerate(answer["a"]["results"])}
    for i, change in enumerate(changes):
        assert change["mark"] in MARKS
        assert change["rank_b"] == i + 1 and change["rank_a"] == rank_a[change["index"]]
        expected = "up" if change["rank_b"] < change["rank_a"] else "down" if change["rank_b"] > change["rank_a"] else "same"
        assert change["mark"] == expected

    cut = client.post("/v1/rerank/compare", json={**body, "top_n": 2}).json()
    assert len(cut["a"]["results"]) == len(cut["b"]["results"]) == 2
    assert all(c["mark"] in MARKS for c in cut["changes"])


@pytest.mark.parametrize(("versions", "status", "word"), [
    ([STABLE, STABLE], 422, "different"),
    ([STABLE, "ghost-v9"], 404, "ghost-v9"),
    ([STABLE], 422, "versions"),
    ([STABLE, CANDIDATE, STABLE], 422, "versions"),
])
def test_compare_refuses_bad_versions(client: TestClient, two_versions: Any, versions: list[str], status: int,
                                      word: str) -> None:
    response = client.post("/v1/rerank/compare", json={"query": QUERY, "documents": DOCS, "versions": versions})
    assert response.status_code == status, response.text
    assert word in response.json()["error"]["message"]


def test_the_report_never_reaches_back_past_a_traffic_policy_change(client: TestClient, two_versions: Any) -> None:
    """Issue 11: shares and latencies compare like with like, so a 50/50 policy is not judged on
    requests served under the policy before it."""
    put_traffic(client, {"weights": {STABLE: 100, CANDIDATE: 0}, "sticky": False})
    for _ in range(3):
        rank(client)
    changed = two_versions.clock.now()
    put_traffic(client, {"weights": {STABLE: 50, CANDIDATE: 50}, "sticky": False})
    report = two_versions.experiment_report(window_s=3600)
    assert report.window_start >= changed and report.since_policy_change
    assert sum(row.requests for row in report.versions) == 0
