"""Cancellation of one request's work: set once (deadline passed, client left), checked by the
work at safe points (between media items, between video frames, while waiting for scores)."""
from __future__ import annotations

import threading
from collections.abc import Callable

from reranker.errors import RequestCancelled

DEADLINE = "deadline"
DISCONNECTED = "disconnected"
SHUTDOWN = "shutdown"


class CancelToken:
    """Thread-safe; the first reason wins. Callbacks run once, in the thread that cancels."""

    def __init__(self) -> None:
        self._reason: str | None = None
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._reason is not None

    @property
    def reason(self) -> str | None:
        with self._lock:
            return self._reason

    def cancel(self, reason: str) -> bool:
        """Cancel with `reason`; False when it was already cancelled."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()
        return True

    def check(self, what: str) -> None:
        """Raise RequestCancelled if the token is cancelled."""
        reason = self.reason
        if reason is not None:
            raise cancelled_error(reason, what)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` when cancelled (now, if already); returns a function that unregisters it."""
        with self._lock:
            if self._reason is None:
                key = self._next
                self._next += 1
                self._callbacks[key] = callback
                return lambda: self._forget(key)
        callback()
        return lambda: None

    def _forget(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)


def cancelled_error(reason: str, what: str) -> RequestCancelled:
    if reason == DEADLINE:
        return RequestCancelled(f"{what}: the request deadline passed; its work was cancelled", reason)
    return RequestCancelled(f"{what}: the request was cancelled ({reason}); its work was dropped", reason)
