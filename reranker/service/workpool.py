"""The bounded pool that runs ranking work for the HTTP front end.

`workers` threads work on requests; at most `max_queue` more wait for one. Past that a request is
refused at once with Overloaded (HTTP 429 and a Retry-After estimate), so a burst can neither pile
up threads nor starve the event loop that answers liveness. Every piece of work carries a
CancelToken: cancelling it drops the work if it has not started, and otherwise stops it at the
next media item, frame or scoring wait (the engine drops its queued pairs).
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from reranker.cancel import SHUTDOWN, CancelToken
from reranker.clock import Clock
from reranker.errors import NotReady, Overloaded

T = TypeVar("T")
EWMA_WEIGHT = 0.2


@dataclass(frozen=True)
class PoolStats:
    workers: int
    max_queue: int
    running: int
    queued: int
    refused: int


@dataclass(eq=False)
class Work(Generic[T]):
    """One admitted piece of work: its future, its token, and whether a worker has started it."""

    future: Future[T]
    cancel_token: CancelToken
    started: threading.Event


class WorkPool:
    def __init__(self, workers: int, max_queue: int, clock: Clock) -> None:
        self.workers = max(1, workers)
        self.max_queue = max(0, max_queue)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rank")
        self._lock = threading.Lock()
        self._admitted: set[Work[object]] = set()
        self._running = 0
        self._refused = 0
        self._mean_s = 1.0  # EWMA of how long one piece of work holds a worker
        self._closed = False

    def submit(self, work: Callable[[CancelToken], T]) -> Work[T]:
        """Admit `work` (called with its CancelToken in a worker thread) or raise Overloaded."""
        token, started = CancelToken(), threading.Event()
        with self._lock:
            if self._closed:
                raise NotReady("the server is shutting down; the request was not started")
            if len(self._admitted) >= self.workers + self.max_queue:
                self._refused += 1
                raise Overloaded(
                    f"server busy: {self.workers} requests running and {self.max_queue} waiting "
                    f"(max_queue={self.max_queue}); retry later", self._retry_after_locked(),
                )
            future: Future[T] = Future()
            item: Work[T] = Work(future, token, started)
            self._admitted.add(item)  # type: ignore[arg-type]
        self._executor.submit(self._run, item, work)
        return item

    def retry_after_if_full(self) -> int | None:
        """Seconds to wait if a request arriving now would be refused (counted as refused), else None."""
        with self._lock:
            if len(self._admitted) < self.workers + self.max_queue and not self._closed:
                return None
            self._refused += 1
            return self._retry_after_locked()

    def cancel(self, item: Work[T], reason: str) -> bool:
        """Cancel `item`; True if it had not started (it never will)."""
        never_started = item.future.cancel()  # only succeeds while the future is still pending
        item.cancel_token.cancel(reason)
        if never_started:
            self._forget(item)
        return never_started

    def stats(self) -> PoolStats:
        with self._lock:
            running = self._running
            return PoolStats(self.workers, self.max_queue, running, len(self._admitted) - running, self._refused)

    def close(self) -> None:
        """Refuse new work, cancel what is queued or running, and let the threads finish."""
        with self._lock:
            self._closed = True
            admitted = list(self._admitted)
        for item in admitted:
            self.cancel(item, SHUTDOWN)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, item: Work[T], work: Callable[[CancelToken], T]) -> None:
        if not item.future.set_running_or_notify_cancel():
            return  # cancelled while queued: dropped without running
        item.started.set()
        with self._lock:
            self._running += 1
        began = self._clock.monotonic()
        try:
            item.cancel_token.check("request")
            result = work(item.cancel_token)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)
        finally:
            took = self._clock.monotonic() - began
            with self._lock:
                self._running -= 1
                self._mean_s += EWMA_WEIGHT * (took - self._mean_s)
            self._forget(item)

    def _forget(self, item: Work[T]) -> None:
        with self._lock:
            self._admitted.discard(item)  # type: ignore[arg-type]

    def _retry_after_locked(self) -> int:
        """Seconds until a place is likely free: the queue ahead, worked off by all workers."""
        ahead = len(self._admitted) - self.workers + 1
        return max(1, min(60, math.ceil(ahead * self._mean_s / self.workers)))
