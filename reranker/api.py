"""REST routes (FastAPI). Every route is a thin call into the service facade."""
from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from reranker.api_guard import BodyLimitMiddleware, admin_actor, admin_route_class
from reranker.api_models import (
    CompareBody, CompareResponse, ErrorResponse, RerankBody, RerankResponse, UpdateBody,
    VersionBody, to_raw,
)
from reranker.errors import RerankerError
from reranker.service import RerankService
from reranker.service.types import Caller, RankRequest, RankResult

log = logging.getLogger(__name__)
MAX_AUDIT_ROWS = 1000
MAX_WINDOW_S = 30 * 86_400.0
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 503)
}
HTTP_ERROR_TYPES = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def _request(body: RerankBody, http: Request, user: str | None, region: str | None) -> RankRequest:
    return RankRequest(
        query=to_raw(body.query),
        documents=tuple(to_raw(d) for d in body.documents),
        top_n=body.top_n,
        instruction=body.instruction,
        caller=Caller(user_key=user, region=region, client_ip=http.client.host if http.client else None),
    )


def _answer(result: RankResult, body: RerankBody) -> dict[str, Any]:
    docs = body.documents
    return {
        "id": result.request_id,
        "model": result.version,
        "results": [
            {
                "index": r.index,
                "relevance_score": r.score,
                **({"document": _echo(docs[r.index])} if body.return_documents else {}),
            }
            for r in result.results
        ],
        "usage": {**result.usage, "documents": result.n_documents, "latency_ms": round(result.latency_ms, 3)},
    }


def _echo(item: Any) -> dict[str, Any]:
    return {"text": item} if isinstance(item, str) else item.model_dump(exclude_none=True)


def public_routes(service: RerankService) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True,
                 responses=ERRORS, tags=["rerank"])
    def rerank(
        body: RerankBody,
        http: Request,
        response: Response,
        x_user_id: str | None = Header(default=None),
        x_region: str | None = Header(default=None),
    ) -> dict[str, Any]:
        """Rank documents (text, images, videos) against a query; best first."""
        result = service.rank(_request(body, http, x_user_id, x_region), pinned_version=body.model)
        response.headers["X-Model-Version"] = result.version
        response.headers["X-Request-Id"] = result.request_id
        return _answer(result, body)

    @router.post("/v1/rerank/compare", response_model=CompareResponse, response_model_exclude_none=True,
                 responses=ERRORS, tags=["rerank"])
    def compare(body: CompareBody, http: Request) -> dict[str, Any]:
        """Rank the same request with two versions and mark rank changes."""
        result = service.compare(_request(body, http, None, None), (body.versions[0], body.versions[1]))
        return {
            "a": _answer(result.a, body),
            "b": _answer(result.b, body),
            "changes": [vars(c) for c in result.changes],
        }

    @router.get("/v1/models", tags=["models"])
    def models() -> dict[str, Any]:
        """Loaded model versions, their state and traffic share."""
        return {"object": "list", "data": service.versions()}

    @router.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    def readyz() -> Response:
        """A model version is serving and the data directory takes writes."""
        problem = service.readiness()
        if problem is None:
            return JSONResponse({"status": "ready", "stable": service.stable_version()})
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)

    @router.get("/metrics", tags=["health"])
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(service.metrics_text(), media_type="text/plain; version=0.0.4")

    return router


def admin_routes(service: RerankService) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS, route_class=admin_route_class(service))
    actor = admin_actor(service)

    @router.post("/updates", status_code=202)
    def submit_update(body: UpdateBody, who: str = Depends(actor)) -> dict[str, Any]:
        """Start a hot update: background load, validation, staged rollout."""
        rollout_id = service.submit_update(
            body.path, plan=body.plan, mode=body.mode, actor=who, force_replace=body.force_replace
        )
        return {"id": rollout_id, "status": service.status()}

    @router.get("/status")
    def status(who: str = Depends(actor)) -> dict[str, Any]:
        """Light, banner, rollout state, stage, share, gates and recent events."""
        return service.status()

    @router.post("/rollout/{command}")
    def rollout_command(command: str, who: str = Depends(actor)) -> dict[str, Any]:
        """pause | resume | promote | rollback | acknowledge | cancel."""
        service.rollout_command(command, actor=who)
        return service.status()

    @router.post("/versions", status_code=202)
    def load_version(body: VersionBody, who: str = Depends(actor)) -> dict[str, Any]:
        """Load a version beside the others without giving it traffic."""
        return {"id": service.load_version(body.path, actor=who)}

    @router.delete("/versions/{version_id}")
    def unload_version(version_id: str, who: str = Depends(actor)) -> dict[str, Any]:
        """Drain and unload a version that serves no share."""
        service.unload_version(version_id, actor=who)
        return {"id": version_id, "state": "retired"}

    @router.get("/traffic")
    def get_traffic(who: str = Depends(actor)) -> dict[str, Any]:
        """The traffic policy in force."""
        return service.traffic()

    @router.put("/traffic")
    def put_traffic(policy: dict[str, Any], who: str = Depends(actor)) -> dict[str, Any]:
        """Replace the traffic policy (validated whole; a bad one is refused with the reason)."""
        return service.set_traffic(policy, actor=who)

    @router.get("/experiments")
    def experiments(window_s: float = Query(600.0, gt=0, le=MAX_WINDOW_S), candidate: str | None = None,
                    who: str = Depends(actor)) -> dict[str, Any]:
        """Per-version evidence over the window, shadow agreement and the promote / keep stable /
        inconclusive verdict (what the Experiments tab shows)."""
        return service.experiment_report(window_s=window_s, candidate=candidate)

    @router.get("/audit")
    def audit(limit: int = Query(100, ge=1, le=MAX_AUDIT_ROWS), who: str = Depends(actor)) -> dict[str, Any]:
        """Recent operator actions."""
        return {"entries": service.audit(limit)}

    return router


def _error_body(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request body"


def create_api(service: RerankService, max_request_bytes: int) -> FastAPI:
    app = FastAPI(
        title="Multimodal reranker",
        version="1.0",
        description="Rank text, image and video documents; hot-swap the model while serving.",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)

    @app.exception_handler(RerankerError)
    def reranker_error(_: Request, exc: RerankerError) -> JSONResponse:
        return _error_body(exc.status_code, str(exc), type(exc).__name__)

    @app.exception_handler(StarletteHTTPException)
    def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error_body(exc.status_code, str(exc.detail), HTTP_ERROR_TYPES.get(exc.status_code, "HTTPError"))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_body(422, _validation_message(exc), "ValidationError")

    @app.exception_handler(Exception)
    def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        """The last resort: a JSON 500 with an id to find the traceback in the server log, never the
        traceback itself. Each cause found gets its own 4xx; this only keeps the shape."""
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", error_id, request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return _error_body(500, f"internal error (id {error_id}); the server log has the details", "InternalError")

    app.include_router(public_routes(service))
    app.include_router(admin_routes(service))
    return app
