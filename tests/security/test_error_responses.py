"""Issue 8, item 6: inputs that gave a plain-text 500 get a JSON 4xx naming the field.

Lone surrogates in text, a NUL or an over-long media path, a huge `limit`, an over-long or
non-ASCII model path, a non-ASCII bearer token; and whatever is left gets a JSON 500 with no
traceback in it.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from reranker.api import create_api
from reranker.service.updates import COMMANDS
from tests.conftest import AUTH

JSON = {"content-type": "application/json"}


def lenient_client(service: Any) -> tuple[TestClient, FastAPI]:
    """A client that returns server errors as responses (what a real client would see), and its app."""
    app = create_api(service, service.settings.limits.max_request_bytes)
    return TestClient(app, raise_server_exceptions=False), app


@pytest.fixture(scope="module")
def lenient(service: Any) -> TestClient:
    return lenient_client(service)[0]


def _raw(body: str) -> bytes:
    """JSON text sent as is: json.dumps would refuse the lone surrogates we want to send."""
    return body.encode("ascii")


def assert_json_error(response: Any, status: int | tuple[int, ...], *needles: str) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    message = response.json()["error"]["message"]
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("body, field", [
    ('{"query": "a cat \\ud800", "documents": ["a dog"]}', "query.text"),
    ('{"query": "a cat", "documents": ["fine", "bad \\udfff"]}', "documents[1].text"),
    ('{"query": {"text": "\\udc80x"}, "documents": ["a dog"]}', "query.text"),
    ('{"query": "a cat", "documents": ["a dog"], "instruction": "rank \\ud83d"}', "instruction"),
])
def test_lone_surrogates_get_422_naming_the_field(lenient: TestClient, body: str, field: str) -> None:
    response = lenient.post("/v1/rerank", content=_raw(body), headers=JSON)
    assert_json_error(response, 422, field, "surrogate")


@pytest.mark.parametrize("path, needle", [
    ("chelsea\x00.png", "NUL"),
    ("images/chelsea.png\x00/../x", "NUL"),
    ("a" * 5000 + ".png", "limit"),
    ("/" + "b" * 300, "limit"),
    ("images/" + "c" * 256 + ".png", "limit"),
    ("d.e/" * 1100, "limit"),
])
def test_bad_media_paths_get_4xx_naming_the_field(lenient: TestClient, path: str, needle: str) -> None:
    body = {"query": "a cat", "documents": [{"text": "x", "image": path}]}
    assert_json_error(lenient.post("/v1/rerank", json=body), 422, "documents[0].image", needle)
    body = {"query": {"video": path}, "documents": ["x"]}
    assert_json_error(lenient.post("/v1/rerank", json=body), 422, "query.video", needle)


@pytest.mark.parametrize("limit", ["1e23", "9223372036854775808", "-1", "0", "10000000"])
def test_audit_limit_out_of_range_is_422(lenient: TestClient, limit: str) -> None:
    assert_json_error(lenient.get(f"/admin/audit?limit={limit}", headers=AUTH), 422, "limit")


def test_audit_limit_in_range_still_works(lenient: TestClient) -> None:
    response = lenient.get("/admin/audit?limit=2", headers=AUTH)
    assert response.status_code == 200 and len(response.json()["entries"]) <= 2


@pytest.mark.parametrize("window", ["1e309", "-5", "0", "9e99"])
def test_experiments_window_out_of_range_is_422(lenient: TestClient, window: str) -> None:
    assert_json_error(lenient.get(f"/admin/experiments?window_s={window}", headers=AUTH), 422, "window_s")


@pytest.mark.parametrize("route", ["/admin/versions", "/admin/updates"])
@pytest.mark.parametrize("path, needle", [
    ("m" * 5000, "path"),
    ("9/7\u00f4", "9/7"),
    ("org/" + "n" * 300, "path"),
    ("models/\x00evil", "NUL"),
    ("a/\u00e9\u00e9/b" * 3, "path"),
])
def test_bad_model_paths_get_4xx(lenient: TestClient, route: str, path: str, needle: str) -> None:
    response = lenient.post(route, json={"path": path}, headers=AUTH)
    message = assert_json_error(response, (404, 422), needle)
    assert len(message) < 1000, "the message quotes a 5,000-character path whole"


@pytest.mark.parametrize("route", ["/admin/versions", "/admin/updates"])
def test_lone_surrogate_model_path_is_422(lenient: TestClient, route: str) -> None:
    response = lenient.post(route, content=_raw('{"path": "models/\\ud800"}'), headers={**AUTH, **JSON})
    assert_json_error(response, 422, "path")


def _admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every admin route and method, from the OpenAPI schema."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/admin"):
            for method in sorted(operations):
                for command in COMMANDS if "{command}" in path else ("",):
                    routes.append((method.upper(), path.replace("{command}", command).replace("{version_id}", "nope")))
    return routes


@pytest.mark.parametrize("token", ["t\u00e9st".encode("utf-8"), "t\u00e9st".encode("latin-1"), "\u2603\u00ff".encode("utf-8")])
def test_non_ascii_bearer_token_is_401_on_every_admin_route(service: Any, token: bytes) -> None:
    lenient, app = lenient_client(service)
    routes = _admin_routes(app)
    assert len(routes) >= 14, routes  # the 14 the attack found 500 on
    for method, path in routes:
        response = lenient.request(method, path, headers={"Authorization": b"Bearer " + token},
                                   content=b"{}" if method in ("POST", "PUT") else None)
        assert_json_error(response, 401, "admin token")


def test_unexpected_errors_are_json_500_without_a_traceback(service: Any) -> None:
    client, app = lenient_client(service)

    @app.get("/boom-for-test")
    def boom() -> None:
        raise RuntimeError("secret internals /srv/app/reranker.py line 12")

    response = client.get("/boom-for-test")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    text = json.dumps(response.json())
    assert "Traceback" not in text and "secret internals" not in text and "RuntimeError" not in text
    assert "internal error (id " in response.json()["error"]["message"]
