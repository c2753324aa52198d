"""Prometheus series of one service instance (own CollectorRegistry: no process-global state)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
