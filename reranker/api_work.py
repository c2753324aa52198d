"""Runs one request's work in the bounded pool from an async route, and cancels it when the
client disconnects or the per-request deadline passes. The event loop itself never blocks, so
liveness (an async route) is answered however busy the workers are."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from reranker.cancel import DEADLINE, DISCONNECTED, CancelToken, cancelled_error
from reranker.service.workpool import WorkPool

T = TypeVar("T")
RANK_PATHS = frozenset({"/v1/rerank", "/v2/rerank", "/rerank", "/v1/score", "/score", "/v1/rerank/compare"})


class EarlyRefusalMiddleware:
    """A ranking request that would find the work pool full gets its 429 before its body is read
    or parsed: under a burst the event loop spends no time on requests it will refuse anyway.
    (The pool still decides admission for the requests let through.)"""

    def __init__(self, app: ASGIApp, pool: WorkPool, on_refuse: Callable[[], None]) -> None:
        self.app = app
        self.pool = pool
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in RANK_PATHS:
            retry_after = self.pool.retry_after_if_full()
            if retry_after is not None:
                self.on_refuse()
                await _refuse(send, retry_after, self.pool)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, retry_after: int, pool: WorkPool) -> None:
    message = (f"server busy: {pool.workers} requests running and {pool.max_queue} waiting "
               f"(max_queue={pool.max_queue}); retry later")
    data = json.dumps({"error": {"message": message, "type": "Overloaded"}, "detail": message}).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": data})


async def run_bounded(pool: WorkPool, http: Request, work: Callable[[CancelToken], T], timeout_s: float,
                      on_cancel: Callable[[str, bool], None] | None = None) -> T:
    """The result of `work` run in `pool`; RequestCancelled (504) past `timeout_s`, Overloaded (429)
    when the pool's queue is full. `on_cancel(reason, never_started)` reports a cancellation."""
    item = pool.submit(work)
    result = asyncio.wrap_future(item.future)
    left = asyncio.ensure_future(_client_left(http))
    try:
        waiting: set[asyncio.Future[Any]] = {result, left}
        await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if result.done():
            return result.result()
        reason = DISCONNECTED if left.done() else DEADLINE
        never_started = pool.cancel(item, reason)
        if on_cancel is not None:
            on_cancel(reason, never_started)
        raise cancelled_error(reason, "request")
    finally:
        left.cancel()
        if not result.done():
            result.cancel()
        result.add_done_callback(_consume)


async def _client_left(http: Request) -> None:
    """Returns once the client has gone (the body was already read, so the next message is the
    disconnect)."""
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            return


def _consume(future: asyncio.Future[T]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log "exception never retrieved"
