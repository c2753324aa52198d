"""One gate per device: forward passes of every version on it run one at a time, live first.

Live batches take the device whenever it is free. Background work (golden-set chunks, paired
latency probes) takes it only when no live batch is waiting, or after `every` live batches in a
row, so it neither starves nor holds live traffic back by more than one small chunk at a time.
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

    @contextmanager
    def live(self) -> Iterator[None]:
        with self._cond:
            self._live_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy and not self._background_due())
            finally:
                self._live_waiting -= 1
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

    def _background_due(self) -> bool:
        return self._background_waiting > 0 and self._live_since_background >= self._every

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
