"""Gates: typed pass/fail/pending verdicts on the evidence a rollout gathers."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from reranker.control.livestats import WindowStats
from reranker.errors import InputError


@dataclass(frozen=True)
class GateConfig:
    golden_max_delta: float = 0.001  # same-model: max |score delta| on the golden set
    ndcg_tolerance: float = 0.01  # new-model: candidate NDCG@5 may trail the stable's by this much
    latency_ratio: float = 1.15  # candidate P95 <= ratio x stable P95
    latency_min_samples: int = 20  # per version, in the window, before latency is judged
    max_error_rate: float = 0.01
    error_min_samples: int = 20  # candidate requests in the window before errors are judged
    max_memory_growth: float = 0.05  # RSS growth since the candidate finished loading
    window_seconds: float = 60.0  # live window the latency and error gates look at
    check_interval_s: float = 1.0  # live gates are checked at most this often
    failed_checks_to_rollback: int = 3  # consecutive failing checks that trigger a rollback
    require_evidence: bool = True  # a stage below 100% ends only once its live gates have decided


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict. A pending gate lacks evidence yet: it has not failed."""

    name: str
    observed: float | None
    threshold: float
    passed: bool
    detail: str
    pending: bool = False

    @property
    def verdict(self) -> str:
        return "pending" if self.pending else ("pass" if self.passed else "fail")

    @property
    def failed(self) -> bool:
        return not self.passed and not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "observed": self.observed,
            "threshold": self.threshold,
            "passed": self.passed,
            "pending": self.pending,
            "verdict": self.verdict,
            "detail": self.detail,
        }


def _at_most(value: float, limit: float) -> bool:
    """value <= limit, with float noise at the boundary counting as equal (1.15 x 0.1 is 0.11499...)."""
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9)


def _pending(name: str, threshold: float, detail: str) -> GateResult:
    return GateResult(name=name, observed=None, threshold=threshold, passed=True, detail=detail, pending=True)


def golden_same_model(stable_scores: Sequence[float], candidate_scores: Sequence[float], cfg: GateConfig) -> GateResult:
    """Same weights reloaded: every golden score must match the stable's within golden_max_delta."""
    if len(stable_scores) != len(candidate_scores) or not stable_scores:
        raise InputError(
            f"golden scores must be two equal, non-empty lists, got {len(stable_scores)} and {len(candidate_scores)}"
        )
    deltas = [abs(a - b) for a, b in zip(stable_scores, candidate_scores)]
    worst = max(deltas) if all(math.isfinite(d) for d in deltas) else math.inf
    passed = _at_most(worst, cfg.golden_max_delta)
    detail = f"max |score delta| {worst:.6f} over {len(deltas)} golden pairs (limit {cfg.golden_max_delta:g})"
    return GateResult("golden_same_model", worst, cfg.golden_max_delta, passed, detail)


def golden_new_model(stable_ndcg: float, candidate_ndcg: float, cfg: GateConfig) -> GateResult:
    """New weights: candidate NDCG@5 on the labelled golden set >= stable's minus the tolerance."""
    floor = stable_ndcg - cfg.ndcg_tolerance
    passed = math.isfinite(candidate_ndcg) and _at_most(floor, candidate_ndcg)
    detail = f"candidate NDCG@5 {candidate_ndcg:.4f} vs stable {stable_ndcg:.4f} (tolerance {cfg.ndcg_tolerance:g})"
    return GateResult("golden_new_model", candidate_ndcg, floor, passed, detail)


def ndcg_at_k(scores: Sequence[float], labels: Sequence[float], k: int = 5) -> float:
    """NDCG@k of documents ordered by score, with graded relevance labels (0 = irrelevant)."""
    if len(scores) != len(labels):
        raise InputError(f"scores and labels must have equal length, got {len(scores)} and {len(labels)}")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    gains = [labels[i] for i in order[:k]]
    ideal = sorted(labels, reverse=True)[:k]

    def dcg(values: Sequence[float]) -> float:
        return sum((2**rel - 1) / math.log2(rank + 2) for rank, rel in enumerate(values))

    best = dcg(ideal)
    return dcg(gains) / best if best > 0 else 0.0


def latency_gate(stable: WindowStats, candidate: WindowStats, cfg: GateConfig) -> GateResult:
    limit = cfg.latency_ratio * stable.p95
    if min(stable.count, candidate.count) < cfg.latency_min_samples:
        return _pending(
            "latency_p95",
            limit,
            f"waiting for {cfg.latency_min_samples} requests per version "
            f"(stable {stable.count}, candidate {candidate.count})",
        )
    passed = _at_most(candidate.p95, limit)
    detail = (
        f"candidate P95 {candidate.p95 * 1000:.1f} ms vs stable {stable.p95 * 1000:.1f} ms "
        f"(limit {cfg.latency_ratio:g}x = {limit * 1000:.1f} ms)"
    )
    return GateResult("latency_p95", candidate.p95, limit, passed, detail)


def error_rate_gate(candidate: WindowStats, cfg: GateConfig) -> GateResult:
    if candidate.count < cfg.error_min_samples:
        return _pending(
            "error_rate",
            cfg.max_error_rate,
            f"waiting for {cfg.error_min_samples} candidate requests (have {candidate.count}, "
            f"{candidate.errors} failed)",
        )
    passed = _at_most(candidate.error_rate, cfg.max_error_rate)
    detail = f"{candidate.errors} of {candidate.count} candidate requests failed ({candidate.error_rate:.2%})"
    return GateResult("error_rate", candidate.error_rate, cfg.max_error_rate, passed, detail)


def memory_gate(baseline_rss: int, rss_now: int, cfg: GateConfig) -> GateResult:
    """Process RSS growth since the candidate finished loading."""
    if baseline_rss <= 0:
        return _pending("memory_growth", cfg.max_memory_growth, "no RSS baseline recorded")
    growth = (rss_now - baseline_rss) / baseline_rss
    passed = _at_most(growth, cfg.max_memory_growth)
    detail = f"RSS {rss_now / 2**20:.0f} MiB vs {baseline_rss / 2**20:.0f} MiB after load ({growth:+.1%})"
    return GateResult("memory_growth", growth, cfg.max_memory_growth, passed, detail)


def live_gates(
    names: Sequence[str],
    stable: WindowStats,
    candidate: WindowStats,
    baseline_rss: int,
    rss_now: int,
    cfg: GateConfig,
) -> list[GateResult]:
    """The live gates a stage names ("latency", "error_rate", "memory"), in that order."""
    results = []
    if "latency" in names:
        results.append(latency_gate(stable, candidate, cfg))
    if "error_rate" in names:
        results.append(error_rate_gate(candidate, cfg))
    if "memory" in names:
        results.append(memory_gate(baseline_rss, rss_now, cfg))
    return results
