"""Is the store writable? A rate-limited write probe behind readiness, with an alert on each change.

A failed write anywhere in the service makes the store unhealthy at once; the probe (at most one
per `interval_s`) notices a full or read-only disk nobody wrote to yet, and the store file being
deleted or replaced while the service runs. Going unhealthy raises an alert; recovering logs it.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

from reranker.clock import Clock

log = logging.getLogger(__name__)


class ProbedStore(Protocol):
    @property
    def write_error(self) -> str | None: ...

    def unwritable(self, exc: BaseException | str) -> str: ...

    def check_file(self) -> str | None: ...

    def check_writable(self) -> str | None: ...


class StoreHealth:
    """The store's health as readiness sees it; `alert(kind, message)` hears every change for the worse."""

    def __init__(self, store: ProbedStore, clock: Clock, alert: Callable[[str, str], None],
                 interval_s: float = 5.0) -> None:
        self._store = store
        self._clock = clock
        self._alert = alert
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._problem: str | None = None

    def problem(self, probe: bool = True) -> str | None:
        """None when the store takes writes; otherwise a message naming the data directory.

        `probe=False` (readiness, on the event loop) does no SQLite I/O: it sees the store file
        (one stat) and any failed write at once, and the last probe's verdict otherwise.
        """
        now = self._clock.monotonic()
        with self._lock:
            problem = self._store.check_file()  # one stat: every call notices a deleted file
            if problem is None:
                failed_write = self._store.write_error
                due = self._checked_at is None or now - self._checked_at >= self._interval_s
                if probe and (due or failed_write):  # while writes fail, every watcher pass re-probes
                    self._checked_at = now
                    problem = self._store.check_writable()  # a successful probe clears an earlier failed write
                elif failed_write is not None:
                    problem = self._problem or self._store.unwritable(failed_write)
                else:
                    problem = self._problem
            previous, self._problem = self._problem, problem
        if problem is not None and previous is None:
            log.error("ALERT store_unwritable: %s", problem)
            self._alert("store_unwritable", problem)
        elif problem is None and previous is not None:
            log.warning("the store takes writes again (was: %s)", previous)
        return problem
