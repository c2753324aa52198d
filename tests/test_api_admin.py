"""Admin routes over the real service: the bearer token, loading and unloading versions,
traffic policy validation, and the audit log."""
from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from reranker.service.views import AuditEntryView
from tests.conftest import AUTH, CANDIDATE, STABLE, wait_for_version

ADMIN_ROUTES = [
    ("POST", "/admin/updates", {"path": CANDIDATE}),
    ("GET", "/admin/status", None),
    ("POST", "/admin/rollout/pause", None),
    ("POST", "/admin/versions", {"path": CANDIDATE}),
    ("DELETE", f"/admin/versions/{STABLE}", None),
    ("GET", "/admin/traffic", None),
    ("PUT", "/admin/traffic", {"weights": {STABLE: 100}}),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/experiments", None),
]
BAD_CREDENTIALS = {
    "missing": {},
    "wrong-token": {"Authorization": "Bearer not-the-token"},
    "wrong-scheme": {"Authorization": "Basic test-token"},
    "empty-bearer": {"Authorization": "Bearer "},
}


def call(client: TestClient, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    return client.request(method, path, json=body, headers=headers or {})


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type"}
    return error["message"]


def models(client: TestClient) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in client.get("/v1/models").json()["data"]}


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
def test_admin_routes_need_the_token(client: TestClient, service: Any, method: str, path: str, body: Any,
                                     credentials: dict[str, str]) -> None:
    def actions() -> list[AuditEntryView]:  # refused logins are audited (rate-limited); nothing else may be
        return [e for e in service.audit(1000) if e.action != "auth_failed"]

    audit_before = len(actions())
    response = call(client, method, path, body, credentials)
    assert "admin token" in error_of(response, 401)
    assert response.json()["error"]["type"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert len(actions()) == audit_before  # nothing was done
    assert service.usable_versions() == [STABLE]


def test_status_and_traffic_with_the_token(client: TestClient) -> None:
    status = client.get("/admin/status", headers=AUTH).json()
    assert status["light"] == "green" and status["stable"] == STABLE
    traffic = client.get("/admin/traffic", headers=AUTH).json()
    assert traffic["primary"] == STABLE and traffic["weights"] == {STABLE: 100}
    assert traffic["shadow"] is None and traffic["rules"] == []


def test_traffic_round_trips(client: TestClient, restore_service: Any) -> None:
    before = client.get("/admin/traffic", headers=AUTH).json()
    response = client.put("/admin/traffic", json={**before, "sticky": False}, headers=AUTH)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["sticky"] is False and after["generation"] == before["generation"] + 1
    assert client.get("/admin/traffic", headers=AUTH).json() == after


def test_rollout_commands_are_checked(client: TestClient) -> None:
    message = error_of(client.post("/admin/rollout/explode", headers=AUTH), 422)
    assert "explode" in message and "pause" in message
    assert error_of(client.post("/admin/rollout/promote", headers=AUTH), 409)
    entries = client.get("/admin/audit", headers=AUTH).json()["entries"]
    assert any(e["action"] == "promote" and e["outcome"] == "refused" for e in entries)


BAD_POLICIES = [
    pytest.param({"weights": {STABLE: 60, CANDIDATE: 30}}, "sum to 100", id="weights-not-100"),
    pytest.param({"weights": {STABLE: 50, "ghost-v9": 50}}, "ghost-v9", id="unknown-version"),
    pytest.param({"weights": {STABLE: 100}, "rules": [{"cidr": "10.0.0.0/33", "version": STABLE}]}, "cidr",
                 id="bad-cidr"),
    pytest.param({"weights": {STABLE: 100}, "rules": [{"region": "eu", "version": "ghost-v9"}]}, "ghost-v9",
                 id="rule-to-unknown-version"),
    pytest.param({"weights": {STABLE: 100}, "shadow": {"version": "ghost-v9"}}, "ghost-v9", id="unknown-shadow"),
    pytest.param({"weights": {STABLE: 100}, "shadow": CANDIDATE}, "shadow", id="shadow-not-an-object"),
    pytest.param({"weights": {STABLE: "all"}}, "number", id="weight-not-a-number"),
    pytest.param({"weights": {STABLE: 100}, "colour": "red"}, "colour", id="unknown-key"),
    pytest.param({"weights": {STABLE: 100}, "primary": "ghost-v9"}, "ghost-v9", id="unknown-primary"),
]


def test_version_lifecycle_and_refused_policies(client: TestClient, restore_service: Any) -> None:
    service = restore_service
    response = client.post("/admin/versions", json={"path": CANDIDATE}, headers={**AUTH, "X-Actor": "alice"})
    assert response.status_code == 202, response.text
    version = response.json()["id"]
    assert version == CANDIDATE
    assert wait_for_version(service, version) == "ready"
    listed = models(client)
    assert listed[CANDIDATE]["state"] == "ready" and listed[CANDIDATE]["share"] == 0
    assert listed[CANDIDATE]["stable"] is False and listed[STABLE]["share"] == 100

    assert "already" in error_of(client.post("/admin/versions", json={"path": CANDIDATE}, headers=AUTH), 409)
    pinned = client.post("/v1/rerank", json={"query": "a cat", "documents": ["a cat", "a car"], "model": CANDIDATE})
    assert pinned.status_code == 200 and pinned.headers["X-Model-Version"] == CANDIDATE

    policy_before = client.get("/admin/traffic", headers=AUTH).json()
    for param in BAD_POLICIES:
        bad, reason = param.values
        message = error_of(client.put("/admin/traffic", json=bad, headers=AUTH), 422)
        assert reason in message, (param.id, message)
        assert client.get("/admin/traffic", headers=AUTH).json() == policy_before, param.id
    error_of(client.put("/admin/traffic", json=[1, 2], headers=AUTH), 422)

    assert "traffic" in error_of(client.delete(f"/admin/versions/{STABLE}", headers=AUTH), 409)
    assert error_of(client.delete("/admin/versions/ghost-v9", headers=AUTH), 404)
    deleted = client.delete(f"/admin/versions/{CANDIDATE}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json() == {"id": CANDIDATE, "state": "retired"}
    assert models(client)[CANDIDATE]["state"] == "retired"
    assert models(client)[STABLE]["state"] == "serving"
    gone = client.post("/v1/rerank", json={"query": "a", "documents": ["b"], "model": CANDIDATE})
    assert error_of(gone, 503)

    entries = client.get("/admin/audit", params={"limit": 200}, headers=AUTH).json()["entries"]
    seen = {(e["actor"], e["action"], e["target"], e["outcome"]) for e in entries}
    assert ("api:alice", "load_version", CANDIDATE, "started") in seen
    assert ("api", "load_version", CANDIDATE, "refused") in seen
    assert ("api", "unload_version", STABLE, "refused") in seen
    assert ("api", "unload_version", CANDIDATE, "ok") in seen
    refused_policies = [e for e in entries if e["action"] == "set_traffic" and e["outcome"] == "refused"]
    assert len(refused_policies) >= len(BAD_POLICIES)
    assert any("sum to 100" in e["detail"] for e in refused_policies)
    assert entries == sorted(entries, key=lambda e: e["at"], reverse=True)


def test_loading_a_missing_directory_is_refused(client: TestClient, service: Any) -> None:
    message = error_of(client.post("/admin/versions", json={"path": "models/no-such-model"}, headers=AUTH), 422)
    assert "no-such-model" in message
    entries = client.get("/admin/audit", params={"limit": 5}, headers=AUTH).json()["entries"]
    assert entries[0]["action"] == "load_version" and entries[0]["outcome"] == "refused"
    assert service.usable_versions() == [STABLE]


def test_update_body_is_validated(client: TestClient) -> None:
    response = client.post("/admin/updates", json={"path": CANDIDATE, "mode": "sideways"}, headers=AUTH)
    assert "mode" in error_of(response, 422)
