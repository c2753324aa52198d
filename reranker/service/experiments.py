"""The Experiments view: per-version evidence and the promote / keep stable / inconclusive verdict."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Sequence

from reranker.control.gates import GateConfig, error_rate_gate
from reranker.control.livestats import WindowStats
from reranker.control.measures import slower_test

LATENCY_KIND = "request latency (wall clock, arrival to answer)"
QUALITY_GAIN = 0.03  # candidate NDCG@5 must be at least 3% better to promote
MEMORY_LIMIT = 0.50  # candidate may hold at most 50% more memory
MIN_REQUESTS = 20  # fewer live requests than this on either side: inconclusive
# Latency and errors are judged by the rollout gates' own rules (reranker.control.gates / measures):
# a one-sided test plus a minimum effect, with the thresholds of the service's GateConfig.


@dataclass(frozen=True)
class ComparisonWindow:
    """The one period every figure of the experiment report covers, for every version alike: the
    last `requested_s` seconds, but never reaching back past the last traffic-policy change (so two
    arms are compared only over time both were live under the policy in force)."""

    start: float
    end: float
    requested_s: float
    policy_changed_at: float | None

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    @property
    def since_policy_change(self) -> bool:
        return self.policy_changed_at is not None and self.start == self.policy_changed_at

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "seconds": self.seconds, "requested_s": self.requested_s,
                "policy_changed_at": self.policy_changed_at, "since_policy_change": self.since_policy_change}


class PolicyEpoch:
    """When the traffic policy in force took effect. An operator's change always starts a new
    policy; a rollout's step that follows the previous change within `merge_s` continues it (a
    linear ramp moves the share on every tick, and must not shrink the comparison window to a
    fraction of a second)."""

    def __init__(self, merge_s: float = 5.0) -> None:
        self._merge_s = merge_s
        self._since: float | None = None
        self._last: float | None = None
        self._lock = threading.Lock()

    def changed(self, now: float, stepwise: bool = False) -> None:
        with self._lock:
            if not stepwise or self._last is None or now - self._last >= self._merge_s:
                self._since = now
            self._last = now

    @property
    def since(self) -> float | None:
        with self._lock:
            return self._since


def comparison_window(now: float, window_s: float, policy_changed_at: float | None) -> ComparisonWindow:
    """[start, now) with start = the later of now - window_s and the policy change (clock injected)."""
    start = now - window_s
    if policy_changed_at is not None and start < policy_changed_at <= now:
        start = policy_changed_at
    return ComparisonWindow(start, now, window_s, policy_changed_at)


def series_bucket_s(window_s: float) -> float:
    """Bucket width of the report's time series: about 60 buckets over the requested window, >= 5 s."""
    return max(5.0, window_s / 60)


class ScoreHistory:
    """The most recent scores each version returned (for the score-distribution plot)."""

    def __init__(self, per_version: int = 2000) -> None:
        self._per_version = per_version
        self._scores: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, version: str, scores: Sequence[float]) -> None:
        with self._lock:
            self._scores.setdefault(version, deque(maxlen=self._per_version)).extend(scores)

    def snapshot(self) -> dict[str, list[float]]:
        with self._lock:
            return {version: list(values) for version, values in self._scores.items()}


@dataclass(frozen=True)
class Evidence:
    """What is known of one version for the decision."""

    version: str
    requests: int
    error_rate: float
    p95_ms: float | None
    bytes_in_memory: int | None
    ndcg: float | None
    latencies_ms: Sequence[float] = ()  # successful requests' latencies in the window (LATENCY_KIND)
    errors: int | None = None  # failed requests in the window (None: derived from error_rate)

    def window(self) -> WindowStats:
        errors = self.errors if self.errors is not None else round(self.error_rate * self.requests)
        return WindowStats(self.requests, errors, 0.0, self.p95_ms or 0.0, self.error_rate)


def _row(criterion: str, observed: float | None, threshold: str, passed: bool | None, detail: str) -> dict[str, Any]:
    return {"criterion": criterion, "observed": observed, "threshold": threshold,
            "passed": passed, "detail": detail}


def decide(stable: Evidence, candidate: Evidence, cfg: GateConfig = GateConfig()) -> dict[str, Any]:
    """Rows of the decision table and the verdict. A row's passed is None when undecidable.
    Latency: the rollout latency gate's rule (one-sided Mann-Whitney U plus a minimum effect on the
    medians) applied to each version's request latencies in the window. Errors: the error-rate
    gate's rule (one-sided Fisher exact test plus a minimum effect in percentage points)."""
    rows = []
    limit = (cfg.latency_ratio - 1.0) * 100.0
    threshold = f"<= +{limit:g}% (or Mann-Whitney p >= {cfg.latency_alpha:g})"
    enough = stable.requests >= MIN_REQUESTS and candidate.requests >= MIN_REQUESTS
    if enough and stable.latencies_ms and candidate.latencies_ms:
        test = slower_test(candidate.latencies_ms, stable.latencies_ms, limit, cfg.latency_alpha)
        rows.append(_row("latency change (median)", test.slower_pct / 100.0, threshold, not test.slower,
                         f"{LATENCY_KIND}: median {test.first_median:.1f} ms vs {test.second_median:.1f} ms over "
                         f"{len(candidate.latencies_ms)} / {len(stable.latencies_ms)} requests, Mann-Whitney "
                         f"p={test.p_greater:.3g}; slower only when both exceed their limits"))
    else:
        rows.append(_row("latency change (median)", None, threshold, None,
                         f"needs {MIN_REQUESTS} requests on each version "
                         f"({stable.requests} / {candidate.requests} so far)"))
    if stable.ndcg is not None and candidate.ndcg is not None and stable.ndcg > 0:
        gain = candidate.ndcg / stable.ndcg - 1.0
        rows.append(_row("quality change (NDCG@5, labelled set)", gain, f">= +{QUALITY_GAIN:.0%}",
                         gain >= QUALITY_GAIN, f"{candidate.ndcg:.3f} vs {stable.ndcg:.3f}"))
    else:
        rows.append(_row("quality change (NDCG@5, labelled set)", None, f">= +{QUALITY_GAIN:.0%}", None,
                         "not measured"))
    if stable.bytes_in_memory and candidate.bytes_in_memory is not None:
        growth = candidate.bytes_in_memory / stable.bytes_in_memory - 1.0
        rows.append(_row("memory change", growth, f"<= +{MEMORY_LIMIT:.0%}", growth <= MEMORY_LIMIT,
                         f"{candidate.bytes_in_memory / 2**20:.0f} MiB vs {stable.bytes_in_memory / 2**20:.0f} MiB"))
    errors = error_rate_gate(candidate.window(), replace(cfg, error_min_samples=MIN_REQUESTS), None,
                             stable.window())
    rows.append(_row("error rate change (vs stable)", None if errors.observed is None else errors.observed / 100.0,
                     f"<= +{errors.threshold:g} points (or Fisher p >= {cfg.error_alpha:g})",
                     None if errors.pending else errors.passed, errors.detail))
    if any(r["passed"] is False for r in rows):
        verdict = "keep stable"
    elif all(r["passed"] is True for r in rows):
        verdict = "promote"
    else:
        verdict = "inconclusive"
    return {"verdict": verdict, "rows": rows, "stable": stable.version, "candidate": candidate.version}
