"""The OpenAPI document says what the service does: bearer auth, typed admin answers, the real
document bounds, /metrics as text; and /docs renders from local assets (no CDN)."""
from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import TEST_LIMITS


def schema(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def test_admin_routes_declare_bearer_auth_and_public_ones_do_not(client: TestClient) -> None:
    doc = schema(client)
    schemes = doc["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            secured = {name: []} in operation.get("security", [])
            assert secured == path.startswith("/admin/"), (method, path)


def test_admin_and_model_routes_have_response_schemas(client: TestClient) -> None:
    paths = schema(client)["paths"]
    for path, method in [("/admin/status", "get"), ("/admin/updates", "post"), ("/admin/rollout/{command}", "post"),
                         ("/admin/versions", "post"), ("/admin/versions/{version_id}", "delete"),
                         ("/admin/traffic", "get"), ("/admin/traffic", "put"), ("/admin/experiments", "get"),
                         ("/admin/audit", "get"), ("/v1/models", "get"), ("/v1/models/{model_id}", "get")]:
        responses = paths[path][method]["responses"]
        ok = responses.get("200") or responses.get("202")
        ref = ok["content"]["application/json"]["schema"]
        assert "$ref" in ref, (method, path, ref)


def test_constraints_match_behaviour(client: TestClient) -> None:
    components = schema(client)["components"]["schemas"]
    documents = components["RerankBody"]["properties"]["documents"]["anyOf"]
    array = next(v for v in documents if v.get("type") == "array")
    assert (array["minItems"], array["maxItems"]) == (1, TEST_LIMITS.max_documents)
    query = components["RerankBody"]["properties"]["query"]["anyOf"]
    text = next(v for v in query if v.get("type") == "string")
    assert text["pattern"] == r"\S"
    # and the service does what the schema says
    too_many = client.post("/v1/rerank", json={"query": "a", "documents": ["x"] * (TEST_LIMITS.max_documents + 1)})
    assert too_many.status_code == 422
    blank = client.post("/v1/rerank", json={"query": "  ", "documents": ["x"]})
    assert blank.status_code == 422 and "query" in blank.json()["detail"]


def test_metrics_is_documented_as_text(client: TestClient) -> None:
    content = schema(client)["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/plain", "application/openmetrics-text"}
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_docs_render_from_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", page.text)
    assets = [u for pair in urls for u in pair if u]
    assert assets and all(u.startswith("/") for u in assets), assets  # nothing from another host
    for url in assets:
        assert client.get(url).status_code == 200, url
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 500_000
