"""Per-request observation, as one ASGI middleware around the whole app (REST and console):
the request id (kept from X-Request-Id or made up) echoed on every answer, the HTTP status
series in Prometheus, and one access-log line per request through uvicorn's access logger."""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Callable, Protocol

from prometheus_client import Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
ACCESS_LOGGER = "uvicorn.access"
_VALID_ID = re.compile(r"[A-Za-z0-9._:/=+-]{1,128}")


class HttpMetrics(Protocol):
    """The two series the middleware feeds (ServiceMetrics has them)."""

    http_requests: Counter  # labels: method, route, status
    http_duration: Histogram  # labels: method, route


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id when it is a sane token (<= 128 of [A-Za-z0-9._:/=+-]), else a new one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            if _VALID_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def route_label(scope: Scope, status: int) -> str:
    """A bounded label: the matched route's template, 'gradio' for the console, 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if isinstance(path, str) and path:
        return path
    if status in (404, 405):
        return "unmatched"
    return "gradio"


class ObserveMiddleware:
    """Request id in `request.state.request_id` and every answer's X-Request-Id; status and
    latency counted per route template; one access-log record per request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._metrics = metrics
        self._monotonic = monotonic
        self._log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self._monotonic()
        request_id = request_id_from(list(scope.get("headers") or []))
        scope.setdefault("state", {})["request_id"] = request_id
        status, version = 500, None  # 500 if the app fails before it answers

        async def observed_send(message: Message) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers.append("X-Request-Id", request_id)
                status = int(message["status"])
                version = headers.get("x-model-version")
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._record(scope, request_id, status, version, self._monotonic() - started)

    def _record(self, scope: Scope, request_id: str, status: int, version: str | None, seconds: float) -> None:
        method, route = scope["method"], route_label(scope, status)
        if self._metrics is not None:
            self._metrics.http_requests.labels(method, route, str(status)).inc()
            self._metrics.http_duration.labels(method, route).observe(seconds)
        client = scope.get("client")
        fields = {
            "method": method, "path": scope["path"], "status": status, "latency_ms": round(seconds * 1000.0, 2),
            "request_id": request_id, "version": version, "client": client[0] if client else None,
        }
        self._log.info("%s %s %d %.1fms id=%s version=%s", method, scope["path"], status, seconds * 1000.0,
                       request_id, version or "-", extra={"http": fields})
