"""REST routes (FastAPI). Every route is a thin call into the service facade."""
from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from reranker.api_docs import bound_documents, offline_app
from reranker.api_guard import BodyLimitMiddleware, MethodGuardMiddleware, admin_actor, admin_route_class
from reranker.api_observe import ObserveMiddleware
from reranker.api_admin_models import (
    AuditLog, ModelList, UpdateAccepted, VersionAccepted, VersionRetired,
)
from reranker.api_compat import (
    answer, caller, pinned_version, rank_request, score_answer, score_request, v2_answer,
)
from reranker.api_models import (
    CompareBody, CompareResponse, ErrorResponse, RerankBody, RerankResponse, RerankV2Response, ScoreBody,
    ScoreResponse, UpdateBody, VersionBody,
)
from reranker.api_work import EarlyRefusalMiddleware, run_bounded
from reranker.errors import NotFound, Overloaded, RerankerError
from reranker.service import RerankService
from reranker.service.types import RankResult
from reranker.service.views import ExperimentReport, StatusView, TrafficView, VersionView

log = logging.getLogger(__name__)
MAX_AUDIT_ROWS = 1000
MAX_WINDOW_S = 30 * 86_400.0
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503, 504)
}
METRICS_CONTENT: dict[int | str, dict[str, Any]] = {200: {
    "description": "Prometheus text format (OpenMetrics when the Accept header asks for it).",
    "content": {"text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}}},
}}
HTTP_ERROR_TYPES = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def _request_id(http: Request) -> str | None:
    """The request's id, set by RequestIdMiddleware (the client's X-Request-Id, or a new one)."""
    return getattr(http.state, "request_id", None)


def public_routes(service: RerankService) -> APIRouter:
    router = APIRouter()
    timeout_s = service.settings.server.request_timeout_s

    def cancelled(reason: str, never_started: bool) -> None:
        if never_started:
            service.metrics.cancelled.labels(reason, "queued").inc()

    # Ranking runs in the service's bounded work pool (429 + Retry-After when its queue is full),
    # under the per-request deadline, and is cancelled when the client leaves (reranker.api_work).
    async def rank(body: RerankBody, http: Request, response: Response, user: str | None,
                   region: str | None) -> RankResult:
        request = replace(rank_request(body, caller(http, user, region)), request_id=_request_id(http))
        known = [v.id for v in service.versions()] if body.model else []
        pinned = pinned_version(body.model, known)
        result = await run_bounded(service.work, http,
                                   lambda cancel: service.rank(request, pinned_version=pinned, cancel=cancel),
                                   timeout_s, cancelled)
        response.headers["X-Model-Version"] = result.version
        response.headers["X-Request-Id"] = result.request_id
        return result

    @router.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True,
                 responses=ERRORS, tags=["rerank"])
    async def rerank(
        body: RerankBody,
        http: Request,
        response: Response,
        x_user_id: str | None = Header(default=None),
        x_region: str | None = Header(default=None),
    ) -> dict[str, Any]:
        """Rank documents (text, images, videos) against a query; best first (Cohere v1 shape)."""
        return answer(await rank(body, http, response, x_user_id, x_region), body, echo_by_default=False)

    @router.post("/v2/rerank", response_model=RerankV2Response, response_model_exclude_none=True,
                 responses=ERRORS, tags=["rerank"])
    async def rerank_v2(
        body: RerankBody,
        http: Request,
        response: Response,
        x_user_id: str | None = Header(default=None),
        x_region: str | None = Header(default=None),
    ) -> dict[str, Any]:
        """Cohere v2's rerank (cohere.ClientV2, LangChain and LlamaIndex CohereRerank): results plus `meta`."""
        return v2_answer(await rank(body, http, response, x_user_id, x_region), body)

    @router.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True,
                 responses=ERRORS, tags=["rerank"])
    async def rerank_alias(
        body: RerankBody,
        http: Request,
        response: Response,
        x_user_id: str | None = Header(default=None),
        x_region: str | None = Header(default=None),
    ) -> dict[str, Any]:
        """Jina's and vLLM's path: as /v1/rerank, but documents are echoed unless return_documents is false."""
        return answer(await rank(body, http, response, x_user_id, x_region), body, echo_by_default=True)

    async def score(body: ScoreBody, http: Request, response: Response) -> dict[str, Any]:
        request = replace(score_request(body, caller(http, None, None)), request_id=_request_id(http))
        known = [v.id for v in service.versions()] if body.model else []
        pinned = pinned_version(body.model, known)
        result = await run_bounded(service.work, http,
                                   lambda cancel: service.rank(request, pinned_version=pinned, cancel=cancel),
                                   timeout_s, cancelled)
        response.headers["X-Model-Version"] = result.version
        response.headers["X-Request-Id"] = result.request_id
        return score_answer(result, created=int(service.clock.now()))

    for path in ("/v1/score", "/score"):
        router.add_api_route(path, score, methods=["POST"], response_model=ScoreResponse, responses=ERRORS,
                             tags=["rerank"], summary="vLLM's score API: text_1 against each text_2",
                             description="Scores in the order of text_2 (not sorted).")

    @router.post("/v1/rerank/compare", response_model=CompareResponse, response_model_exclude_none=True,
                 responses=ERRORS, tags=["rerank"])
    async def compare(body: CompareBody, http: Request) -> dict[str, Any]:
        """Rank the same request with two versions and mark rank changes."""
        request, versions = rank_request(body, caller(http, None, None)), (body.versions[0], body.versions[1])
        result = await run_bounded(service.work, http,
                                   lambda cancel: service.compare(request, versions, cancel=cancel),
                                   timeout_s, cancelled)
        return {
            "a": answer(result.a, body, echo_by_default=False),
            "b": answer(result.b, body, echo_by_default=False),
            "changes": [vars(c) for c in result.changes],
        }

    @router.get("/v1/models", tags=["models"], response_model=ModelList)
    def models() -> ModelList:
        """Loaded model versions, their state and traffic share."""
        return ModelList(data=service.versions())

    @router.get("/v1/models/{model_id}", tags=["models"], response_model=VersionView,
                responses={404: {"model": ErrorResponse}})
    def model(model_id: str) -> VersionView:
        """One loaded model version."""
        for view in service.versions():
            if view.id == model_id:
                return view
        raise NotFound(f"model {model_id!r} is not loaded; GET /v1/models lists the versions")

    # Liveness and readiness are async routes doing no blocking work: the event loop answers them
    # even when every rank worker and the thread pool are busy.
    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """A model version is serving and the data directory takes writes (no SQLite I/O here:
        failed writes and the store file are checked at once, the write probe runs in a thread)."""
        problem = service.readiness()
        if problem is None:
            return JSONResponse({"status": "ready", "stable": service.stable_version()})
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)

    @router.get("/metrics", tags=["health"], response_class=PlainTextResponse, responses=METRICS_CONTENT)
    def metrics(http: Request) -> Response:
        """Prometheus metrics (OpenMetrics when Accept asks for application/openmetrics-text)."""
        accept = http.headers.get("accept", "")
        return Response(service.metrics_text(accept), media_type=service.metrics.content_type(accept))

    # HEAD for probes (load balancers, uptime checks); documented once, under GET
    router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
    router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)
    return router


def admin_routes(service: RerankService) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS, route_class=admin_route_class(service))
    actor = admin_actor(service)

    @router.post("/updates", status_code=202, response_model=UpdateAccepted)
    def submit_update(body: UpdateBody, who: str = Depends(actor)) -> UpdateAccepted:
        """Start a hot update: background load, validation, staged rollout."""
        rollout_id = service.submit_update(
            body.path, plan=body.plan, mode=body.mode, actor=who, force_replace=body.force_replace
        )
        return UpdateAccepted(id=rollout_id, status=service.status())

    @router.get("/status", response_model=StatusView)
    def status(who: str = Depends(actor)) -> StatusView:
        """Light, banner, rollout state, stage, share, gates and recent events."""
        return service.status()

    @router.post("/rollout/{command}", response_model=StatusView)
    def rollout_command(command: str, who: str = Depends(actor)) -> StatusView:
        """pause | resume | promote | rollback | acknowledge | cancel."""
        service.rollout_command(command, actor=who)
        return service.status()

    @router.post("/versions", status_code=202, response_model=VersionAccepted)
    def load_version(body: VersionBody, who: str = Depends(actor)) -> dict[str, Any]:
        """Load a version beside the others without giving it traffic."""
        return {"id": service.load_version(body.path, actor=who)}

    @router.delete("/versions/{version_id}", response_model=VersionRetired)
    def unload_version(version_id: str, who: str = Depends(actor)) -> dict[str, Any]:
        """Drain and unload a version that serves no share."""
        service.unload_version(version_id, actor=who)
        return {"id": version_id, "state": "retired"}

    @router.get("/traffic", response_model=TrafficView)
    def get_traffic(who: str = Depends(actor)) -> TrafficView:
        """The traffic policy in force."""
        return service.traffic()

    @router.put("/traffic", response_model=TrafficView)
    def put_traffic(policy: dict[str, Any], who: str = Depends(actor)) -> TrafficView:
        """Replace the traffic policy (validated whole; a bad one is refused with the reason)."""
        return service.set_traffic(policy, actor=who)

    @router.get("/experiments", response_model=ExperimentReport)
    def experiments(window_s: float = Query(600.0, gt=0, le=MAX_WINDOW_S), candidate: str | None = None,
                    who: str = Depends(actor)) -> ExperimentReport:
        """Per-version evidence over the window, shadow agreement and the promote / keep stable /
        inconclusive verdict (what the Experiments tab shows)."""
        return service.experiment_report(window_s=window_s, candidate=candidate)

    @router.get("/audit", response_model=AuditLog)
    def audit(limit: int = Query(100, ge=1, le=MAX_AUDIT_ROWS), who: str = Depends(actor)) -> AuditLog:
        """Recent operator actions."""
        return AuditLog(entries=service.audit(limit))

    return router


def _error_body(status: int, message: str, kind: str) -> JSONResponse:
    # `detail` too: clients such as LlamaIndex's JinaRerank read resp["detail"] on failure
    return JSONResponse({"error": {"message": message, "type": kind}, "detail": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request body"


def create_api(service: RerankService, max_request_bytes: int, observe: bool = True) -> FastAPI:
    app = offline_app(
        title="Multimodal reranker",
        version="1.0",
        description="Rank text, image and video documents; hot-swap the model while serving.",
    )
    bound_documents(app, service.settings.limits.max_documents)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)
    routers = [public_routes(service), admin_routes(service)]
    app.add_middleware(MethodGuardMiddleware,
                       routes=lambda: [*app.router.routes, *(r for router in routers for r in router.routes)])
    app.add_middleware(EarlyRefusalMiddleware, pool=service.work, on_refuse=service.metrics.overloaded.inc)
    if observe:  # app.py passes False and adds it outermost, around the console's guards too
        app.add_middleware(ObserveMiddleware, metrics=service.metrics)

    @app.exception_handler(RerankerError)
    def reranker_error(_: Request, exc: RerankerError) -> JSONResponse:
        response = _error_body(exc.status_code, str(exc), type(exc).__name__)
        if isinstance(exc, Overloaded):
            service.metrics.overloaded.inc()
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

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

    for router in routers:
        app.include_router(router)
    return app
