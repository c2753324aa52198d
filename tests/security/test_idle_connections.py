"""Issue 8, item 5: idle and slow connections must not exhaust file descriptors.

Against a real app.py: a connection that sends nothing, a request head that stops half way and a
body that stops half way are all closed by the server within their timeout; with 200 idle sockets
open (over a cap of 50) liveness still answers and the process holds a bounded number of fds.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.security.app_process import AppProcess, wait_for

HEAD_TIMEOUT_S, MAX_CONNECTIONS, IDLE_SOCKETS = 1.0, 50, 200
CLOSE_BOUND_S = 10.0  # head timeout plus a busy 2-core machine's slack; the old server never closed


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path_factory.mktemp("idle"), [
        "--header-timeout", str(HEAD_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS),
        "--keep-alive-timeout", "1",
    ])
    try:
        yield process
    finally:
        process.stop()


def connect(app: AppProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", app.port), timeout=CLOSE_BOUND_S + 5)
    return sock


def closed_by_server_within(sock: socket.socket) -> float:
    """Seconds until the server closes `sock` (reading and discarding any answer)."""
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {time.monotonic() - started:.0f} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - started


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"G"],
                         ids=["silent", "half-a-head", "one-byte"])
def test_connection_that_never_finishes_its_head_is_closed(app: AppProcess, sent: bytes) -> None:
    with connect(app) as sock:
        sock.sendall(sent)
        assert closed_by_server_within(sock) < CLOSE_BOUND_S


def test_body_that_stops_half_way_is_closed(app: AppProcess) -> None:
    with connect(app) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"query\": ")
        assert closed_by_server_within(sock) < CLOSE_BOUND_S


def test_keep_alive_connection_is_closed_when_idle(app: AppProcess) -> None:
    with connect(app) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in sock.recv(65536)
        assert closed_by_server_within(sock) < CLOSE_BOUND_S


def test_many_idle_sockets_keep_liveness_and_bound_fds(app: AppProcess) -> None:
    baseline = app.open_fds()
    sockets = [connect(app) for _ in range(IDLE_SOCKETS)]
    try:
        for _ in range(3):  # each probe is a new connection past the cap
            started = time.monotonic()
            assert httpx.get(f"{app.url}/healthz", timeout=30).status_code == 200
            assert time.monotonic() - started < 5.0
        # connections past the cap were closed at once, the idlest first
        wait_for(lambda: app.open_fds() <= baseline + MAX_CONNECTIONS + 5, 10,
                 f"fds of the server within the cap (baseline {baseline} + {MAX_CONNECTIONS})")
        # and the ones left are closed by the head timeout
        wait_for(lambda: app.open_fds() <= baseline + 5, CLOSE_BOUND_S + 5, "idle sockets closed")
    finally:
        for sock in sockets:
            sock.close()
