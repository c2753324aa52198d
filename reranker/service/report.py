"""The experiment report: per-version evidence over one window, shadow agreement, the verdict."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from reranker.clock import Clock
from reranker.control.registry import Registry
from reranker.control.requestlog import RequestLogWriter
from reranker.control.gates import GateConfig
from reranker.control.requeststats import latency_samples, latency_series, shadow_stats, version_stats
from reranker.control.store import Store
from reranker.engine.port import ScoringEngine
from reranker.errors import RerankerError
from reranker.evaluation import Decoders, load_labelled_set
from reranker.service.agreement import ShadowStats
from reranker.service.catalog import VersionCatalog
from reranker.service.experiments import Evidence, ScoreHistory, comparison_window, decide, series_bucket_s
from reranker.service.golden import DecodedSet
from reranker.service.views import (
    ComparisonWindowView,
    DecisionView, ExperimentReport, SeriesPointView, ShadowLogView, VersionStatsView,
)

LATENCY_DEFINITION = ("request latency: wall clock from arrival to answer, ms; P50/P95 by linear interpolation "
                      "(the same as /metrics and the rollout's live window); the decision compares the versions' "
                      "medians with a one-sided Mann-Whitney U test, as the rollout latency gate does")


class ExperimentReports:
    """Builds the Experiments tab's report (and GET /admin/experiments) from the request log."""

    def __init__(self, store: Store, request_log: RequestLogWriter, registry: Registry[ScoringEngine],
                 catalog: VersionCatalog, clock: Clock, golden_set: Path, decoders: Decoders,
                 scores: ScoreHistory, shadow_live: ShadowStats, policy_since: Callable[[], float | None],
                 gate_config: GateConfig) -> None:
        self._store = store
        self._request_log = request_log
        self._registry = registry
        self._catalog = catalog
        self._clock = clock
        self._golden_set = golden_set
        self._decoders = decoders
        self._scores = scores
        self._shadow_live = shadow_live
        self._policy_since = policy_since  # when the traffic policy in force took effect (PolicyEpoch)
        self._gate_config = gate_config  # the decision applies the rollout gates' own rules
        self._quality: dict[str, float] = {}
        self._quality_lock = threading.Lock()

    def quality(self, version: str) -> float:
        """Mean NDCG@5 of a loaded version on the labelled set (cached per version)."""
        with self._quality_lock:
            if version in self._quality:
                return self._quality[version]
        golden = DecodedSet.build(load_labelled_set(self._golden_set), self._decoders)
        value = golden.mean_ndcg(golden.scores(self._registry, version))
        with self._quality_lock:
            self._quality[version] = value
        return value

    def report(self, window_s: float = 600.0, candidate: str | None = None) -> ExperimentReport:
        self._request_log.flush(timeout_s=2.0)
        now = self._clock.now()
        # Like with like: never reach back past the last traffic-policy change, so every version's
        # figures (share, latency, errors) come from the same period under the same policy.
        window = comparison_window(now, window_s, self._policy_since())
        since = window.start
        stats = {s.version: s for s in version_stats(self._store, since)}
        loaded = {v.id: v for v in self._catalog.versions() if v.state in ("ready", "serving")}
        rows = []
        for version in sorted(set(stats) | set(loaded)):
            s, v = stats.get(version), loaded.get(version)
            rows.append(VersionStatsView(
                version=version, requests=s.count if s else 0, errors=s.errors if s else 0,
                error_rate=(s.errors / s.count) if s and s.count else 0.0,
                p50_ms=s.p50_ms if s else None, p95_ms=s.p95_ms if s else None,
                observed_share=s.share if s else 0.0, configured_share=v.share if v else 0.0,
                bytes_in_memory=v.bytes_in_memory if v else None, loaded=v is not None,
            ))
        series = [SeriesPointView(bucket_start=p.bucket_start, version=p.version, count=p.count, errors=p.errors,
                                  p50_ms=p.p50_ms, p95_ms=p.p95_ms)
                  for p in latency_series(self._store, since, bucket_s=series_bucket_s(window_s))]
        stable = self._catalog.stable_version()
        others = [r for r in rows if r.loaded and r.version != stable]
        if candidate is None and others:
            candidate = max(others, key=lambda r: (r.requests, r.version)).version
        decision = None
        if stable and candidate and candidate in loaded:
            # service.experiments.decide still answers a dict (that module is being rewritten apart)
            samples = latency_samples(self._store, since)
            decision = DecisionView.model_validate(decide(self._evidence(stable, rows, samples),
                                                          self._evidence(candidate, rows, samples), self._gate_config))
        return ExperimentReport(
            window_s=window_s, window_start=since, since_policy_change=window.since_policy_change,
            window=ComparisonWindowView(start=window.start, end=window.end, seconds=window.seconds,
                                        requested_s=window.requested_s, policy_changed_at=window.policy_changed_at,
                                        since_policy_change=window.since_policy_change),
            bucket_s=series_bucket_s(window_s),
            versions=rows, series=series, latency_definition=LATENCY_DEFINITION,
            scores=self._scores.snapshot(),
            shadow=[ShadowLogView(version=s.version, shadow_version=s.shadow_version, count=s.count,
                                  mean_agreement=s.mean_agreement) for s in shadow_stats(self._store, since)],
            shadow_live=self._shadow_live.summary(),
            decision=decision,
        )

    def _evidence(self, version: str, rows: list[VersionStatsView], samples: dict[str, list[float]]) -> Evidence:
        row = next(r for r in rows if r.version == version)
        try:
            ndcg: float | None = self.quality(version)
        except RerankerError:
            ndcg = None
        return Evidence(version, row.requests, row.error_rate, row.p95_ms, row.bytes_in_memory, ndcg,
                        samples.get(version, ()), row.errors)
