"""Request guards: the body-size limit and the admin bearer token."""
from __future__ import annotations

import json
from typing import Any, Callable, Coroutine, Protocol, Sequence

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import HTTPException
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNAUTHORIZED = "missing or wrong admin token: send 'Authorization: Bearer <RERANKER_ADMIN_TOKEN>'"


class TokenChecker(Protocol):
    def check_admin(self, token: str | None) -> bool: ...

    def auth_failed(self, source: str, client: str | None, target: str, reason: str) -> None: ...


def authenticate(service: TokenChecker, request: Request) -> str:
    """The actor name of a request with the admin bearer token; HTTP 401 (logged, audited) otherwise."""
    header = request.headers.get("authorization")
    scheme, _, token = (header or "").partition(" ")
    if header is None:
        reason = "no Authorization header"
    elif scheme.lower() != "bearer":
        reason = "Authorization is not a Bearer token"
    elif not service.check_admin(token):
        reason = "wrong token"
    else:
        who = request.headers.get("x-actor")
        return f"api:{who}" if who else "api"
    service.auth_failed("api", request.client.host if request.client else None,
                        f"{request.method} {request.url.path}", reason)
    raise HTTPException(status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def admin_route_class(service: TokenChecker) -> type[APIRoute]:
    """Routes that check the token before anything else, body parsing included: a caller without
    the token learns nothing from a 422 about the body."""

    class AdminRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                request.state.admin_actor = authenticate(service, request)
                return await handler(request)

            return guarded

    return AdminRoute


def admin_actor(service: TokenChecker) -> Callable[..., str]:
    """A FastAPI dependency: the actor name of an authenticated admin request."""

    # Declared for the OpenAPI schema (a bearer securityScheme and the X-Actor header); the check
    # itself ran in AdminRoute, before the body was parsed.
    bearer = HTTPBearer(auto_error=False, scheme_name="adminToken",
                        description="The admin token: --admin-token / RERANKER_ADMIN_TOKEN, or the one app.py printed.")

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              x_actor: str | None = Header(default=None)) -> str:
        known = getattr(request.state, "admin_actor", None)
        return known if known is not None else authenticate(service, request)

    return check


API_PREFIXES = ("/v1/", "/v2/", "/admin/")


class MethodGuardMiddleware:
    """REST paths answer 405 (with Allow) for a wrong method and 404 for an unknown /v1, /v2 or
    /admin path, before the Gradio app mounted at / could claim them."""

    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        partial: set[str] = set()
        for route in self._routes():
            if isinstance(route, Mount) or not hasattr(route, "methods"):
                continue  # the Gradio mount, and FastAPI's included-router wrappers (their routes come flat)
            match, _ = route.matches(scope)
            if match is Match.FULL:
                await self.app(scope, receive, send)
                return
            if match is Match.PARTIAL:
                partial.update(getattr(route, "methods", None) or ())
        if partial:
            allow = ", ".join(sorted(partial))
            await _send_error(send, 405, f"method {scope['method']} is not allowed on {scope['path']}; allowed: {allow}",
                              "MethodNotAllowed", [(b"allow", allow.encode())])
        elif scope["path"].startswith(API_PREFIXES):
            await _send_error(send, 404, f"no route {scope['path']}; see /docs", "NotFound")
        else:
            await self.app(scope, receive, send)


async def _send_error(send: Send, status: int, message: str, kind: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps({"error": {"message": message, "type": kind}, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Refuses request bodies over max_bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/gradio_api/upload"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        message = _too_large(self.max_bytes)
        body: dict[str, Any] = {"error": {"message": message, "type": "PayloadTooLarge"}, "detail": message}
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def _too_large(max_bytes: int) -> str:
    return f"request body is larger than the limit of {max_bytes} bytes"


class _TooLarge(HTTPException):
    """Raised while a route reads an over-limit streamed body: FastAPI re-raises HTTPExceptions
    (any other exception becomes a 400 "error parsing the body"), so the client gets the 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_too_large(max_bytes))
