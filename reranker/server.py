"""The HTTP server's bounds (uvicorn, h11): connection cap, head and body read timeouts,
keep-alive, largest request head, and a graceful shutdown that ends within its timeout.

uvicorn closes idle keep-alive connections, but starts no timer for a new connection that sends
nothing or a request head that trickles in byte by byte; 21,000 such connections once used up
every file descriptor. GuardedH11Protocol adds that timer and a connection cap that, when full,
closes the connection idle the longest (waiting for a request head) rather than refusing
someone who has a request to make.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from reranker.settings import ServerSettings

log = logging.getLogger(__name__)
EXIT_MARGIN_S = 5.0  # after the graceful timeout, the app's own shutdown gets this long


@dataclass(frozen=True)
class ConnectionBounds:
    max_connections: int
    head_timeout_s: float  # request line and headers, from the first byte (or the connection)
    read_timeout_s: float  # longest gap between two pieces of a request body


class WaitingConnections:
    """One server's connections that wait for a request head, longest waiting first (O(1) each)."""

    def __init__(self) -> None:
        self._order: dict[GuardedH11Protocol, None] = {}

    def add(self, connection: GuardedH11Protocol) -> None:
        if connection not in self._order:
            self._order[connection] = None

    def discard(self, connection: GuardedH11Protocol) -> None:
        self._order.pop(connection, None)

    def oldest_other_than(self, connection: GuardedH11Protocol) -> GuardedH11Protocol | None:
        for candidate in self._order:
            if candidate is not connection and not candidate.transport.is_closing():
                return candidate
        return None


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a request-head timeout, a body read timeout and a connection cap."""

    bounds = ConnectionBounds(max_connections=2000, head_timeout_s=10.0, read_timeout_s=10.0)
    waiting = WaitingConnections()  # replaced by a fresh one per server in server_for()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False  # reranker.api_observe writes the access line (request id, version, latency)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting.add(self)
        self._arm(self.bounds.head_timeout_s)
        if len(self.connections) > self.bounds.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.waiting.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Time what the client still owes: the rest of a request head, or of a body."""
        if self.transport.is_closing():
            self._disarm()
            self.waiting.discard(self)
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            self.waiting.add(self)
            # between requests uvicorn's keep-alive timer runs; once bytes of a new head arrive
            # (which cancels it) the head has head_timeout_s to complete
            if self._read_timer is None and self.timeout_keep_alive_task is None:
                self._arm(self.bounds.head_timeout_s)
            return
        self.waiting.discard(self)
        if state is h11.SEND_BODY:
            self._disarm()
            if not self.flow.read_paused:
                self._arm(self.bounds.read_timeout_s)
        else:
            self._disarm()

    def _arm(self, seconds: float) -> None:
        self._read_timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY and self.flow.read_paused:
            self._arm(self.bounds.read_timeout_s)  # the app is not reading yet: not the client's fault
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self.transport.close()

    def _make_room(self) -> None:
        """Over the cap: close the connection waiting longest for a request head, else this one."""
        victim = self.waiting.oldest_other_than(self) or self
        self.waiting.discard(victim)
        victim.transport.close()


class BoundedServer(uvicorn.Server):
    """After SIGTERM/SIGINT the process ends within shutdown_timeout_s + EXIT_MARGIN_S even if
    a thread will not stop: a daemon watchdog then exits hard."""

    def __init__(self, config: uvicorn.Config, exit_after_s: float) -> None:
        super().__init__(config)
        self._exit_after_s = exit_after_s
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._exit_after_s, _hard_exit, args=(self._exit_after_s,))
            self._watchdog.daemon = True
            self._watchdog.start()
        super().handle_exit(sig, frame)


def _hard_exit(after_s: float) -> None:
    log.error("shutdown still not finished %.0f s after the signal; exiting now", after_s)
    logging.shutdown()
    os._exit(1)


def server_for(app: Any, host: str, port: int, bounds: ServerSettings) -> BoundedServer:
    protocol = type("BoundedH11Protocol", (GuardedH11Protocol,), {
        "bounds": ConnectionBounds(
            max_connections=bounds.max_connections,
            head_timeout_s=bounds.header_timeout_s,
            read_timeout_s=bounds.header_timeout_s,
        ),
        "waiting": WaitingConnections(),
    })
    config = uvicorn.Config(
        app, host=host, port=port,
        # reranker.logs configures logging (levels, one format); uvicorn's own access lines are off
        # because reranker.api_observe writes a richer one through the same "uvicorn.access" logger
        log_level=None, log_config=None, access_log=False,
        http=protocol,
        timeout_keep_alive=max(1, round(bounds.keep_alive_s)),
        h11_max_incomplete_event_size=bounds.max_header_bytes,
        # GuardedH11Protocol keeps connections at max_connections by closing the idlest; uvicorn's own
        # cap (503 once connections or tasks reach it) is only a backstop above that, so a probe
        # arriving while an evicted connection is still closing is not refused
        limit_concurrency=2 * bounds.max_connections,
        timeout_graceful_shutdown=max(1, round(bounds.shutdown_timeout_s)),
        backlog=min(2048, bounds.max_connections),
    )
    logging.getLogger("uvicorn.access").propagate = True  # access_log=False detached it from the root handler
    return BoundedServer(config, bounds.shutdown_timeout_s + EXIT_MARGIN_S)
