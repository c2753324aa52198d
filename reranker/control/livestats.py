"""Per-version rolling windows of (time, latency, ok), bounded in length and age."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from reranker.control.measures import percentile as shared_percentile


@dataclass(frozen=True)
class WindowStats:
    count: int
    errors: int
    p50: float  # seconds, over successful requests; 0.0 when there are none
    p95: float
    error_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "errors": self.errors, "p50": self.p50, "p95": self.p95, "error_rate": self.error_rate}


EMPTY_WINDOW = WindowStats(count=0, errors=0, p50=0.0, p95=0.0, error_rate=0.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The shared percentile (reranker.control.measures), 0.0 for no values."""
    value = shared_percentile(sorted_values, q)
    return 0.0 if value is None else value


@dataclass(frozen=True)
class PairedWindow:
    """Paired replays in a window: the same requests on both versions, model seconds per pair."""

    stable: tuple[float, ...]
    candidate: tuple[float, ...]
    candidate_runs: int  # replays run on the candidate (mirrored copies included)
    candidate_errors: int

    @property
    def count(self) -> int:
        return len(self.candidate)


EMPTY_PAIRS = PairedWindow((), (), 0, 0)


class LiveStats:
    """Thread-safe request outcomes per version; old entries drop by age and by count."""

    def __init__(self, max_age_s: float = 600.0, max_samples: int = 20_000) -> None:
        self._max_age_s = max_age_s
        self._max_samples = max_samples
        self._samples: dict[str, deque[tuple[float, float, bool]]] = {}
        self._pairs: dict[tuple[str, str], deque[tuple[float, float | None, float | None, bool]]] = {}
        self._lock = threading.Lock()

    def record_pair(self, stable: str, candidate: str, stable_s: float | None, candidate_s: float | None,
                    candidate_ok: bool, now: float) -> None:
        """One paired replay (seconds per pair; None where that side did not finish)."""
        with self._lock:
            samples = self._pairs.setdefault((stable, candidate), deque(maxlen=self._max_samples))
            samples.append((now, stable_s, candidate_s, candidate_ok))
            horizon = now - self._max_age_s
            while samples and samples[0][0] < horizon:
                samples.popleft()

    def pairs(self, stable: str, candidate: str, since: float) -> PairedWindow:
        with self._lock:
            rows = [r for r in self._pairs.get((stable, candidate), ()) if r[0] >= since]
        timed = [(s, c) for _, s, c, ok in rows if ok and s is not None and c is not None]
        return PairedWindow(
            stable=tuple(s for s, _ in timed), candidate=tuple(c for _, c in timed),
            candidate_runs=len(rows), candidate_errors=sum(1 for *_, ok in rows if not ok),
        )

    def record(self, version: str, latency_s: float, ok: bool, now: float) -> None:
        with self._lock:
            samples = self._samples.setdefault(version, deque(maxlen=self._max_samples))
            samples.append((now, latency_s, ok))
            horizon = now - self._max_age_s
            while samples and samples[0][0] < horizon:
                samples.popleft()

    def window(self, version: str, since: float) -> WindowStats:
        with self._lock:
            rows = [(lat, ok) for t, lat, ok in self._samples.get(version, ()) if t >= since]
        if not rows:
            return EMPTY_WINDOW
        latencies = sorted(lat for lat, ok in rows if ok)
        errors = sum(1 for _, ok in rows if not ok)
        return WindowStats(
            count=len(rows),
            errors=errors,
            p50=percentile(latencies, 50),
            p95=percentile(latencies, 95),
            error_rate=errors / len(rows),
        )

    def forget(self, version: str) -> None:
        with self._lock:
            self._samples.pop(version, None)
            for key in [k for k in self._pairs if version in k]:
                del self._pairs[key]

    def versions(self) -> list[str]:
        with self._lock:
            return sorted(self._samples)
