"""One gate per device: forward passes of every version on it run one at a time, live first.

Live batches take the device whenever it is free. Background work (golden-set chunks, paired
latency probes) takes it only when no live batch is waiting, or after `every` live batches in a
row, so it neither starves nor holds live traffic back by more than one small chunk at a time.

Live batches are served first come, first served (a ticket each). Without that, a busy
version's batch thread releases the gate and takes it straight back before a waiting thread
wakes, so a second version on the same device (a candidate warming up) could wait for ever.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class DeviceGate:
    def __init__(self, every: int = 3) -> None:
        self._every = max(1, every)
        self._cond = threading.Condition()
        self._busy = False
        self._live_waiting = 0
        self._background_waiting = 0
        self._live_since_background = 0
        self._next_ticket = 0
        self._serving_ticket = 0
        self._abandoned: set[int] = set()

    @contextmanager
    def live(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._live_waiting += 1
            entered = False
            try:
                self._cond.wait_for(
                    lambda: not self._busy and ticket == self._serving_ticket and not self._background_due())
                entered = True
            finally:
                self._live_waiting -= 1
                if entered:
                    self._advance()
                else:  # interrupted while waiting: later tickets must not wait on this one
                    self._abandoned.add(ticket)
                    self._skip_abandoned()
                    self._cond.notify_all()
            self._busy = True
            self._live_since_background += 1
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def background(self) -> Iterator[None]:
        with self._cond:
            self._background_waiting += 1
            try:
                self._cond.wait_for(
                    lambda: not self._busy and (self._live_waiting == 0 or self._live_since_background >= self._every))
            finally:
                self._background_waiting -= 1
            self._busy = True
            self._live_since_background = 0
        try:
            yield
        finally:
            self._release()

    def _advance(self) -> None:
        self._serving_ticket += 1
        self._skip_abandoned()

    def _skip_abandoned(self) -> None:
        while self._serving_ticket in self._abandoned:
            self._abandoned.discard(self._serving_ticket)
            self._serving_ticket += 1

    def _background_due(self) -> bool:
        return self._background_waiting > 0 and self._live_since_background >= self._every

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
