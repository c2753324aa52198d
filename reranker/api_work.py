"""Runs one request's work in the bounded pool from an async route, and cancels it when the
client disconnects or the per-request deadline passes. The event loop itself never blocks, so
liveness (an async route) is answered however busy the workers are."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from reranker.cancel import DEADLINE, DISCONNECTED, CancelToken, cancelled_error
from reranker.service.workpool import WorkPool

T = TypeVar("T")


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
