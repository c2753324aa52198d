"""Issue 8, item 9: the smaller gaps.

Failed authentication is logged and audited (rate-limited, never with the token); a caller without
the token gets 401 before any 422 about its body; `instruction` has a length limit; policies with
too many rules, a shadow equal to the primary, or a stage longer than a week are refused naming
the field; the alert webhook takes http(s) URLs only. (Pinned hub revisions for
--allow-downloads: tests/test_loading.py::test_hub_id_is_downloaded_only_when_allowed_and_pinned.)
"""
from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reranker.api import create_api
from reranker.clock import FakeClock
from reranker.control.plans import parse_plan
from reranker.errors import InputError
from reranker.service.views import AuditEntryView
from reranker.settings import settings_from
from tests.conftest import AUTH, MODELS, STABLE

SECRET = "not-the-token-9f3c1e-marker"


def client_from(service: Any, address: str) -> TestClient:
    return TestClient(create_api(service, service.settings.limits.max_request_bytes), client=(address, 40000))


def auth_rows(service: Any, address: str) -> list[AuditEntryView]:
    return [e for e in service.audit(1000) if e.action == "auth_failed" and address in e.actor]


def failures_metric(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('reranker_auth_failures_total{source="api"}'):
            return float(line.split()[-1])
    return 0.0


def test_failed_authentication_is_logged_and_audited_once_per_window_without_the_token(
        service: Any, caplog: pytest.LogCaptureFixture) -> None:
    address = "203.0.113.77"
    client = client_from(service, address)
    before = failures_metric(client)
    with caplog.at_level(logging.WARNING):
        for i in range(6):
            headers = {"Authorization": f"Bearer {SECRET}-{i}"} if i % 2 else {}
            assert client.get("/admin/status", headers=headers).status_code == 401
    rows = auth_rows(service, address)
    assert len(rows) == 1, rows  # rate-limited: one entry for the burst
    assert rows[0].target == "GET /admin/status" and rows[0].outcome == "refused"
    logged = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(logged) == 1 and address in logged[0], logged
    assert failures_metric(client) - before == 6
    everything = str(service.audit(1000)) + caplog.text + client.get("/metrics").text
    assert SECRET not in everything


def test_rate_limit_reports_the_suppressed_count_in_the_next_window() -> None:
    from reranker.service.authlog import AuthFailureLog

    clock, rows, counted = FakeClock(), [], []
    failures = AuthFailureLog(clock, lambda *row: rows.append(row), counted.append, interval_s=60.0)
    for _ in range(4):
        failures.record("api", "198.51.100.1", "GET /admin/status", "wrong token")
    failures.record("api", "198.51.100.2", "GET /admin/status", "wrong token")
    assert len(rows) == 2 and len(counted) == 5
    clock.advance(61)
    failures.record("api", "198.51.100.1", "GET /admin/status", "wrong token")
    assert len(rows) == 3 and "+3 more" in rows[-1][4]


def test_a_broken_store_does_not_turn_401_into_500() -> None:
    from reranker.service.authlog import AuthFailureLog

    def audit(*row: Any) -> None:
        raise RuntimeError("disk full")

    AuthFailureLog(FakeClock(), audit, lambda source: None).record("api", "x", "GET /admin/status", "wrong token")


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/admin/updates"), ("PUT", "/admin/traffic"), ("POST", "/admin/versions"), ("POST", "/admin/rollout/pause"),
])
@pytest.mark.parametrize("body", [b"{not json", b'{"path": 5}', b"[]"])
def test_unauthenticated_bodies_get_401_before_422(service: Any, method: str, path: str, body: bytes) -> None:
    client = client_from(service, "203.0.113.78")
    response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 401, response.text
    response = client.request(method, path, content=body, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code in (409, 422), response.text  # with the token, the body is judged


def test_instruction_length_is_limited(client: TestClient, service: Any) -> None:
    limit = service.settings.limits.max_instruction_chars
    ok = client.post("/v1/rerank", json={"query": "cat", "documents": ["a cat"], "instruction": "x" * limit})
    assert ok.status_code == 200
    response = client.post("/v1/rerank", json={"query": "cat", "documents": ["a cat"], "instruction": "x" * (limit + 1)})
    assert response.status_code == 422
    assert "instruction" in response.json()["error"]["message"] and str(limit) in response.json()["error"]["message"]


def test_max_instruction_chars_is_a_setting() -> None:
    assert settings_from(["--max-instruction-chars", "50"], {}).limits.max_instruction_chars == 50
    assert settings_from([], {"RERANKER_MAX_INSTRUCTION_CHARS": "70"}).limits.max_instruction_chars == 70


@pytest.mark.parametrize(("policy", "field"), [
    ({"weights": {STABLE: 100}, "rules": [{"region": f"r{i}", "version": STABLE} for i in range(101)]}, "rules"),
    ({"weights": {STABLE: 100}, "rules": [{"region": "eu", "version": STABLE}] * 30_000}, "rules"),
    ({"weights": {STABLE: 100}, "shadow": {"version": STABLE}}, "shadow.version"),
])
def test_unreasonable_policies_are_refused_naming_the_field(client: TestClient, service: Any,
                                                            policy: dict[str, Any], field: str) -> None:
    before = client.get("/admin/traffic", headers=AUTH).json()
    response = client.put("/admin/traffic", headers=AUTH, json=policy)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]
    assert client.get("/admin/traffic", headers=AUTH).json() == before


def test_a_hundred_rules_are_still_fine(client: TestClient, restore_service: Any) -> None:
    policy = {"weights": {STABLE: 100}, "rules": [{"region": f"r{i}", "version": STABLE} for i in range(100)]}
    assert client.put("/admin/traffic", headers=AUTH, json=policy).status_code == 200


@pytest.mark.parametrize(("stages", "needle"), [
    ([{"share": 5, "seconds": 1e308}, {"share": 100}], "stage 1: seconds must be at most"),
    ([{"share": 5, "seconds": 7 * 86_400 + 1}, {"share": 100}], "stage 1: seconds must be at most"),
    ([{"share": 1, "seconds": 1}] * 30 + [{"share": 100}], "stages; the limit is"),
])
def test_unreasonable_plans_are_refused(client: TestClient, stages: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_plan(stages)
    response = client.post("/admin/updates", headers=AUTH, json={"path": str(MODELS / "mini-v2"), "plan": stages})
    assert response.status_code == 422 and needle in response.json()["error"]["message"], response.text


def test_a_week_long_stage_is_fine() -> None:
    assert parse_plan([{"share": 5, "seconds": 7 * 86_400}, {"share": 100}]).stages[0].seconds == 7 * 86_400


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://h/", "javascript:alert(1)",
                                 "data:text/plain,hi", "http://", "https:///path", "example.com/hook", "http://[::1"])
def test_webhook_must_be_http_or_https(url: str) -> None:
    with pytest.raises(InputError, match="webhook_url must be an http:// or https:// URL"):
        settings_from(["--webhook-url", url], {})
    with pytest.raises(InputError, match="webhook_url"):
        settings_from([], {"RERANKER_WEBHOOK_URL": url})


def test_http_webhooks_are_accepted() -> None:
    assert settings_from(["--webhook-url", "https://alerts.example.com/hook"], {}).webhook_url == \
        "https://alerts.example.com/hook"
    assert settings_from([], {"RERANKER_WEBHOOK_URL": "http://127.0.0.1:9000/a"}).webhook_url == \
        "http://127.0.0.1:9000/a"


def test_failed_console_sign_in_is_audited_too(service: Any) -> None:
    assert service.check_console_token(f"{SECRET}-ui") is False
    assert service.check_console_token(service.admin_token()) is True
    rows = [e for e in service.audit(1000) if e.action == "auth_failed" and e.target == "console sign-in"]
    assert rows and "via ui" in rows[0].detail
    assert SECRET not in str(service.audit(1000))
