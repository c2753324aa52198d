"""Which browser sessions hold the admin token, kept on the server.

The token is typed once in the Operator tab; the session that sent it is remembered here (by
Gradio's per-page session hash) and every operator callback asks this object, so the token never
travels again and an anonymous caller of any Gradio endpoint gets no operator data."""
from __future__ import annotations

import threading
from typing import Callable

from reranker.clock import Clock

SESSION_TTL_S = 8 * 3600.0
MAX_SESSIONS = 1000


class OperatorSessions:
    """session hash -> expiry (monotonic seconds); bounded, thread-safe, clock injected."""

    def __init__(self, check_token: Callable[[str], bool], clock: Clock, ttl_s: float = SESSION_TTL_S,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self._check = check_token
        self._clock = clock
        self._ttl = ttl_s
        self._max = max_sessions
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def sign_in(self, session: str | None, token: str | None) -> bool:
        """True (and remembered) when the token checks; a wrong token also signs the session out."""
        if not session:
            return False
        if not self._check((token or "").strip()):
            self.sign_out(session)
            return False
        now = self._clock.monotonic()
        with self._lock:
            self._expiry = {s: t for s, t in self._expiry.items() if t > now}
            if len(self._expiry) >= self._max:
                del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
            self._expiry[session] = now + self._ttl
        return True

    def sign_out(self, session: str | None) -> None:
        with self._lock:
            self._expiry.pop(session or "", None)

    def is_operator(self, session: str | None) -> bool:
        if not session:
            return False
        with self._lock:
            expiry = self._expiry.get(session)
        return expiry is not None and expiry > self._clock.monotonic()
