"""The OpenAPI document and /docs: Swagger UI served from a package (no CDN), and the schema's
document-count bounds set from the running limits."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

DOCS_ASSETS = "/docs-assets"
DOCUMENT_LISTS = ("documents", "text_2")  # request fields whose array length is bounded by max_documents


def offline_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose /docs and /redoc load Swagger UI and ReDoc from the fastapi-offline
    package, served under /docs-assets: the pages work without internet access."""
    return FastAPIOffline(static_url=DOCS_ASSETS, **kwargs)


def bound_documents(app: FastAPI, max_documents: int) -> None:
    """Make the schema say what the service enforces: at most max_documents documents."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for component in schema.get("components", {}).get("schemas", {}).values():
                for name in DOCUMENT_LISTS:
                    _cap_arrays(component.get("properties", {}).get(name), max_documents)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _cap_arrays(node: dict[str, Any] | None, max_items: int) -> None:
    if not node:
        return
    for variant in [node, *node.get("anyOf", [])]:
        if variant.get("type") == "array":
            variant["maxItems"] = max_items
