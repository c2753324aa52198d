"""Admin token checks, and failed attempts logged and audited without flooding either.

A client that fails authentication is logged (warning) and audited once per window; the failures
in between are counted and reported with the next entry. The token a client sent is never
written anywhere: only whether one was sent.
"""
from __future__ import annotations

import hmac
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from reranker.clock import Clock

log = logging.getLogger(__name__)
MAX_CLIENTS = 1024  # clients remembered for rate limiting (the oldest are forgotten first)


def tokens_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the admin token.

    Compares UTF-8 bytes: `hmac.compare_digest` raises TypeError on a `str` with non-ASCII
    characters, which a hostile header can carry.
    """
    if not given or not expected:
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


@dataclass
class _Window:
    started: float
    suppressed: int = 0


class AuthFailureLog:
    """Logs and audits failed admin authentication, at most once per client per `interval_s`."""

    def __init__(self, clock: Clock, audit: Callable[[str, str, str, str, str], object],
                 count: Callable[[str], None], interval_s: float = 60.0) -> None:
        self._clock = clock
        self._audit = audit  # (actor, action, target, outcome, detail)
        self._count = count  # (source) -> increments a metric
        self._interval_s = interval_s
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, source: str, client: str | None, target: str, reason: str) -> None:
        """One failed attempt from `client` (an address, or None) on `target` (e.g. a route)."""
        self._count(source)
        who = client or "unknown client"
        now = self._clock.monotonic()
        with self._lock:
            window = self._windows.get(who)
            if window is not None and now - window.started < self._interval_s:
                window.suppressed += 1
                return
            suppressed = window.suppressed if window is not None else 0
            self._windows[who] = _Window(now)
            self._windows.move_to_end(who)
            while len(self._windows) > MAX_CLIENTS:
                self._windows.popitem(last=False)
        more = f" (+{suppressed} more from this client in the last window)" if suppressed else ""
        detail = f"{reason} via {source}{more}"
        log.warning("admin authentication failed from %s on %s: %s", who, target, detail)
        try:
            self._audit(f"anonymous@{who}", "auth_failed", target, "refused", detail)
        except Exception as exc:  # noqa: BLE001 - a broken store must not turn a 401 into a 500
            log.warning("could not audit a failed authentication: %s", exc)


class AdminAuth:
    """The admin token and what a failed check leaves behind (a log line, an audit entry, a count)."""

    def __init__(self, token: str, failures: AuthFailureLog) -> None:
        self._token = token
        self._failures = failures

    @property
    def token(self) -> str:
        return self._token

    def check(self, token: str | None) -> bool:
        return tokens_match(token, self._token)

    def check_console(self, token: str | None) -> bool:
        """check() for the console's sign-in: a wrong token is logged and audited like the API's."""
        if self.check(token):
            return True
        self.failed("ui", None, "console sign-in", "wrong token" if token else "empty token")
        return False

    def failed(self, source: str, client: str | None, target: str, reason: str) -> None:
        """A failed admin authentication (wrong or missing token): logged and audited, rate-limited."""
        self._failures.record(source, client, target, reason)
