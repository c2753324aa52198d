"""Gates: typed pass/fail/pending verdicts on the evidence a rollout gathers."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from reranker.control.livestats import PairedWindow, WindowStats
from reranker.control.measures import binomial_greater, fisher_greater, slower_test
from reranker.errors import InputError


@dataclass(frozen=True)
class GateConfig:
    golden_max_delta: float = 0.001  # same-model: max |score delta| on the golden set
    ndcg_tolerance: float = 0.01  # new-model: candidate NDCG@5 may trail the stable's by this much
    latency_ratio: float = 1.15  # minimum effect: fail only when the candidate is > (ratio - 1) slower
    latency_alpha: float = 0.01  # ... and a one-sided Mann-Whitney U test says so at this level
    latency_min_samples: int = 20  # paired replays in the window before latency is judged
    max_error_rate: float = 0.01  # minimum effect: fail only when the candidate's error rate exceeds the stable's by more
    error_alpha: float = 0.01  # ... and a one-sided Fisher exact test says it is higher at this level
    error_min_samples: int = 20  # candidate requests in the window before errors are judged
    max_memory_growth: float = 0.05  # RSS growth since the candidate finished loading
    # ... but never a limit below this: caches (scores, text embeddings, decoded media) and the
    # allocator's arenas fill up under live traffic by tens of MiB whatever the version; a leak
    # keeps growing past any floor. Without it an identical candidate was rolled back at +53 MiB.
    min_memory_growth_mib: float = 256.0
    window_seconds: float = 60.0  # live window the latency and error gates look at
    check_interval_s: float = 1.0  # live gates are checked at most this often
    failed_checks_to_rollback: int = 3  # consecutive failing checks that trigger a rollback
    require_evidence: bool = True  # a stage below 100% ends only once its live gates have decided


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict, its observed value and threshold in `unit` ("ms", "%", "MiB", ...).
    A pending gate lacks evidence yet: it has not failed; `have`/`need` count that evidence."""

    name: str
    observed: float | None
    threshold: float
    passed: bool
    detail: str
    pending: bool = False
    unit: str = ""
    have: int | None = None
    need: int | None = None
    evidence: str = ""  # what have/need count, e.g. "candidate requests"

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
            "unit": self.unit,
            "observed_text": _with_unit(self.observed, self.unit),
            "threshold_text": _with_unit(self.threshold, self.unit),
            **({"have": self.have, "need": self.need, "evidence": self.evidence} if self.pending else {}),
        }


def _with_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:+.1f} %" if value < 0 else f"{value:.1f} %"
    if unit in ("ms", "MiB"):
        return f"{value:.1f} {unit}"
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def _at_most(value: float, limit: float) -> bool:
    """value <= limit, with float noise at the boundary counting as equal (1.15 x 0.1 is 0.11499...)."""
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9)


def _pending(name: str, threshold: float, detail: str, unit: str, have: int, need: int, evidence: str) -> GateResult:
    return GateResult(name=name, observed=None, threshold=threshold, passed=True, detail=detail, pending=True,
                      unit=unit, have=have, need=need, evidence=evidence)


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
    return GateResult("golden_same_model", worst, cfg.golden_max_delta, passed, detail, unit="score")


def golden_new_model(stable_ndcg: float, candidate_ndcg: float, cfg: GateConfig) -> GateResult:
    """New weights: candidate NDCG@5 on the labelled golden set >= stable's minus the tolerance."""
    floor = stable_ndcg - cfg.ndcg_tolerance
    passed = math.isfinite(candidate_ndcg) and _at_most(floor, candidate_ndcg)
    detail = f"candidate NDCG@5 {candidate_ndcg:.4f} vs stable {stable_ndcg:.4f} (tolerance {cfg.ndcg_tolerance:g})"
    return GateResult("golden_new_model", candidate_ndcg, floor, passed, detail, unit="NDCG@5")


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


def latency_gate(paired: PairedWindow, cfg: GateConfig) -> GateResult:
    """Candidate vs stable on matched work: the same requests replayed on both versions in
    isolated forward passes (model time per pair). Fails only when the candidate is slower by
    more than the minimum effect (latency_ratio - 1, on the medians) AND a one-sided
    Mann-Whitney U test finds it slower at latency_alpha."""
    limit = (cfg.latency_ratio - 1.0) * 100.0
    if paired.count < cfg.latency_min_samples:
        return _pending("latency", limit, f"waiting for {cfg.latency_min_samples} paired replays (have {paired.count})",
                        "%", paired.count, cfg.latency_min_samples, "paired replays")
    test = slower_test(paired.candidate, paired.stable, limit, cfg.latency_alpha)
    stable_ms, candidate_ms = test.second_median * 1000.0, test.first_median * 1000.0
    slower, passed = test.slower_pct, not test.slower
    detail = (
        f"candidate {candidate_ms:.2f} ms/pair vs stable {stable_ms:.2f} ms/pair (median of {paired.count} paired "
        f"replays, {slower:+.1f} %; Mann-Whitney p={test.p_greater:.3g}); fails when slower by > {limit:g} % "
        f"with p < {cfg.latency_alpha:g}"
    )
    return GateResult("latency", slower, limit, passed, detail, unit="%")


def error_rate_gate(candidate: WindowStats, cfg: GateConfig, paired: PairedWindow | None = None,
                    stable: WindowStats | None = None) -> GateResult:
    """Candidate errors (live requests plus mirrored replays) against the stable's live errors in the
    same window. Fails only when the candidate's rate exceeds the stable's by more than the minimum
    effect (max_error_rate, in percentage points) AND a one-sided Fisher exact test finds it higher at
    error_alpha. Without a stable baseline (fewer than error_min_samples stable requests, e.g. at
    100 %) the test is an exact binomial one against the minimum effect itself. A rate past the
    minimum effect that is not yet significant is inconclusive (pending): it never passes a stage."""
    runs = candidate.count + (paired.candidate_runs if paired else 0)
    errors = candidate.errors + (paired.candidate_errors if paired else 0)
    limit = cfg.max_error_rate * 100.0
    if runs < cfg.error_min_samples:
        return _pending("error_rate", limit,
                        f"waiting for {cfg.error_min_samples} candidate requests (have {runs}, {errors} failed)",
                        "%", runs, cfg.error_min_samples, "candidate requests")
    rate = errors / runs * 100.0
    counts = f"{errors} of {runs} candidate requests failed ({rate:.2f} %; {candidate.count} live, {runs - candidate.count} mirrored)"
    if stable is not None and stable.count >= cfg.error_min_samples:
        baseline = stable.errors / stable.count * 100.0
        p = fisher_greater(errors, runs, stable.errors, stable.count)
        against = f"stable {stable.errors} of {stable.count} ({baseline:.2f} %); Fisher exact p={p:.3g}"
    else:
        baseline = 0.0
        p = binomial_greater(errors, runs, cfg.max_error_rate)
        against = f"no stable baseline in the window; exact binomial p={p:.3g} against {limit:g} %"
    excess = rate - baseline
    rule = f"fails when higher than the stable's by > {limit:g} points with p < {cfg.error_alpha:g}"
    detail = f"{counts} vs {against}; {rule}"
    if excess > limit and p < cfg.error_alpha:
        return GateResult("error_rate", excess, limit, False, detail, unit="%")
    if excess > limit:
        return GateResult("error_rate", excess, limit, True, f"inconclusive: {detail}", pending=True, unit="%",
                          have=runs, need=None, evidence="candidate requests (rate above the limit, not yet significant)")
    return GateResult("error_rate", excess, limit, True, detail, unit="%")


def memory_gate(baseline_rss: int, rss_now: int, cfg: GateConfig) -> GateResult:
    """Process RSS growth (MiB) since traffic started; limit max_memory_growth of that RSS, and
    never less than min_memory_growth_mib."""
    limit = max(baseline_rss * cfg.max_memory_growth / 2**20, cfg.min_memory_growth_mib)
    if baseline_rss <= 0:
        return _pending("memory_growth", limit, "no RSS baseline recorded", "MiB", 0, 1, "RSS baseline")
    growth = (rss_now - baseline_rss) / 2**20
    passed = _at_most(growth, limit)
    detail = (f"RSS {rss_now / 2**20:.0f} MiB vs {baseline_rss / 2**20:.0f} MiB when traffic started "
              f"({growth:+.1f} MiB; limit +{limit:.1f} MiB: {cfg.max_memory_growth:.0%} of RSS, "
              f"at least {cfg.min_memory_growth_mib:.0f} MiB)")
    return GateResult("memory_growth", growth, limit, passed, detail, unit="MiB")


def live_gates(
    names: Sequence[str],
    candidate: WindowStats,
    paired: PairedWindow,
    baseline_rss: int,
    rss_now: int,
    cfg: GateConfig,
    stable: WindowStats | None = None,
) -> list[GateResult]:
    """The live gates a stage names ("latency", "error_rate", "memory"), in that order."""
    results = []
    if "latency" in names:
        results.append(latency_gate(paired, cfg))
    if "error_rate" in names:
        results.append(error_rate_gate(candidate, cfg, paired, stable))
    if "memory" in names:
        results.append(memory_gate(baseline_rss, rss_now, cfg))
    return results
