"""Prometheus series of one service instance (own CollectorRegistry: no process-global state)."""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector, disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    def __init__(self) -> None:
        # No *_created series: they double every counter and histogram and no dashboard reads them.
        # (prometheus_client's switch is process-wide; every registry here wants it off.)
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        self.http_requests = Counter(
            "reranker_http_requests",
            "HTTP requests by method, route template (gradio: the console; unmatched: no route) and status.",
            ["method", "route", "status"], registry=r,
        )
        self.http_duration = Histogram(
            "reranker_http_request_duration_seconds", "HTTP request time by method and route template.",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.requests = Counter(
            "reranker_requests",
            "Rerank requests by version and outcome (ok, error; shadow and shadow_error for shadow copies).",
            ["version", "outcome"], registry=r,
        )
        self.errors = Counter(
            "reranker_request_errors", "Rerank requests that failed, by version and error kind.",
            ["version", "kind"], registry=r,
        )
        self.latency = Histogram(
            "reranker_request_duration_seconds",
            "Request latency by serving version: wall clock from arrival (before media decoding) to the answer "
            "(the one latency of the gates' live window, the request log and the Experiments tab).",
            ["version"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.documents = Counter(
            "reranker_documents_scored", "Documents scored, by version.", ["version"], registry=r,
        )
        self.share = Gauge(
            "reranker_traffic_share_ratio", "Configured share of traffic per version (0-1).",
            ["version"], registry=r,
        )
        self.shadow_agreement = Histogram(
            "reranker_shadow_agreement_ratio",
            "Top-k overlap between the primary and the shadow version's answers.",
            ["primary", "shadow"], buckets=(0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0), registry=r,
        )
        self.model_bytes = Gauge(
            "reranker_model_memory_bytes", "Memory held by each loaded version.", ["version"], registry=r,
        )
        self.rollouts = Counter(
            "reranker_rollouts", "Finished rollouts by outcome (promoted, rolled_back, failed...).",
            ["outcome"], registry=r,
        )
        self.rollout_state = Gauge(
            "reranker_rollout_in_progress", "1 while a hot update is loading, validating or rolling out.",
            registry=r,
        )
        self.swap_blocked = Histogram(
            "reranker_swap_blocked_seconds", "How long a routing swap held the writer lock.",
            buckets=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1), registry=r,
        )

        self.auth_failures = Counter(
            "reranker_auth_failures", "Admin requests refused for a missing or wrong token, by front end.",
            ["source"], registry=r,
        )
        self.store_writable = Gauge(
            "reranker_store_writable", "1 while the data directory's store takes writes (the readiness probe).",
            registry=r,
        )
        self.store_writable.set(1)
        self.cancelled = Counter(
            "reranker_cancelled_requests",
            "Requests whose work was cancelled, by reason (deadline, disconnected) and stage "
            "(queued: never started; decode; scoring).", ["reason", "stage"], registry=r,
        )
        self.cancelled_pairs = Counter(
            "reranker_cancelled_pairs", "Pairs of cancelled requests dropped from the engine queue unscored.",
            registry=r,
        )
        self.overloaded = Counter(
            "reranker_overloaded_requests", "Requests refused with 429 because the admission queue was full.",
            registry=r,
        )

        self.work_running = Gauge("reranker_work_running", "Rank/compare requests a worker is on now.", registry=r)
        self.work_queued = Gauge(
            "reranker_work_queued", "Admitted rank/compare requests waiting for a worker.", registry=r,
        )

    def forget_version(self, version: str) -> None:
        """Drop every per-version series of a version that left memory: /metrics describes what is
        loaded, and each hot update would otherwise add series that never change again."""
        for metric in (self.requests, self.errors, self.latency, self.documents, self.share, self.model_bytes):
            metric.remove_by_labels({"version": version})
        for label in ("primary", "shadow"):
            self.shadow_agreement.remove_by_labels({label: version})

    def watch_request_log(self, lost: Callable[[], Mapping[str, int]]) -> None:
        """Expose the request log's lost records (counted by its writer) as a counter."""
        self.registry.register(_RequestLogLost(lost))

    def render(self, accept: str = "") -> bytes:
        """Prometheus text, or OpenMetrics when `accept` (an Accept header) asks for it."""
        encoder, _ = choose_encoder(accept)
        return encoder(self.registry)

    @staticmethod
    def content_type(accept: str = "") -> str:
        return choose_encoder(accept)[1]


class _RequestLogLost(Collector):
    def __init__(self, lost: Callable[[], Mapping[str, int]]) -> None:
        self._lost = lost

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "reranker_requestlog_dropped",
            "Request-log records never written, by reason (queue_full: the writer fell behind; "
            "write_failed: the store refused the batch, e.g. a full disk).",
            labels=["reason"],
        )
        for reason, count in sorted(self._lost().items()):
            family.add_metric([reason], count)
        yield family
