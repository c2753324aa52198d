"""Request guards: the body-size limit and the admin bearer token."""
from __future__ import annotations

import json
from typing import Any, Callable, Coroutine, Protocol

from fastapi import Request, Response
from fastapi.exceptions import HTTPException
from fastapi.routing import APIRoute
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

    def check(request: Request) -> str:
        known = getattr(request.state, "admin_actor", None)
        return known if known is not None else authenticate(service, request)

    return check


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
        body: dict[str, Any] = {"error": {"message": _too_large(self.max_bytes), "type": "PayloadTooLarge"}}
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
