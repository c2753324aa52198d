"""One gate per device: forward passes of every version on it run one at a time, live first.

Live batches take the device whenever it is free. Background work (golden-set chunks, paired
latency probes) takes it freely while no live batch waits; while live batches wait, it gets at
most `share` of the device's time. A chunk that cut in ahead of waiting live batches is a debt
of its duration; live batches pay it back at share / (1 - share) of their own duration, and the
next chunk may cut in once the debt is paid (no credit is saved up, so chunks never come in a
burst). Background work is never starved (live batches keep paying), and live traffic loses at
most `share` of its throughput (issue 7: live P95 while validating within 1.25x of steady).

Live batches are served first come, first served (a ticket each). Without that, a busy
version's batch thread releases the gate and takes it straight back before a waiting thread
wakes, so a second version on the same device (a candidate warming up) could wait for ever.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

BACKGROUND_SHARE = 0.1
PAID = 1e-9  # seconds: a debt this small is paid (float rounding)


class DeviceGate:
    def __init__(self, share: float = BACKGROUND_SHARE, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < share < 1:
            raise ValueError(f"share must be in (0, 1), got {share}")
        self._earn = share / (1 - share)
        self._clock = clock
        self._cond = threading.Condition()
        self._busy = False
        self._live_waiting = 0
        self._background_waiting = 0
        self._debt = 0.0  # seconds of device time background chunks took ahead of waiting live batches
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
        started = self._clock()
        try:
            yield
        finally:
            with self._cond:
                self._debt = max(0.0, self._debt - (self._clock() - started) * self._earn)
            self._release()

    @contextmanager
    def background(self, share: float | None = None) -> Iterator[None]:
        """Background work; `share` (default: the gate's) is the most of the device time this
        class of work may take from waiting live batches."""
        if share is not None and not 0 < share < 1:
            raise ValueError(f"share must be in (0, 1), got {share}")
        weight = 1.0 if share is None else self._earn / (share / (1 - share))
        with self._cond:
            self._background_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy and (self._live_waiting == 0 or self._paid()))
            finally:
                self._background_waiting -= 1
            self._busy = True
            charged = self._live_waiting > 0  # free while nobody waits
        started = self._clock()
        try:
            yield
        finally:
            with self._cond:
                if charged:
                    self._debt += (self._clock() - started) * weight
            self._release()

    def _advance(self) -> None:
        self._serving_ticket += 1
        self._skip_abandoned()

    def _skip_abandoned(self) -> None:
        while self._serving_ticket in self._abandoned:
            self._abandoned.discard(self._serving_ticket)
            self._serving_ticket += 1

    def _background_due(self) -> bool:
        return self._background_waiting > 0 and self._paid()

    def _paid(self) -> bool:
        return self._debt <= PAID

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
