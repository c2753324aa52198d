"""Gates (typed verdicts) and the live per-version windows they read."""
from __future__ import annotations

import math
import random
import threading

import pytest

from reranker.control.gates import (
    GateConfig,
    GateResult,
    error_rate_gate,
    golden_new_model,
    golden_same_model,
    latency_gate,
    live_gates,
    memory_gate,
    ndcg_at_k,
)
from reranker.control.livestats import EMPTY_PAIRS, EMPTY_WINDOW, LiveStats, PairedWindow, WindowStats, percentile
from reranker.control.measures import binomial_greater, fisher_greater, mann_whitney_greater, slower_test
from reranker.errors import InputError

CFG = GateConfig()


def window(count: int, p95: float, errors: int = 0) -> WindowStats:
    return WindowStats(count=count, errors=errors, p50=p95 / 2, p95=p95, error_rate=errors / count if count else 0.0)


# ----- golden gates ----------------------------------------------------------------------------
def test_same_model_passes_within_a_thousandth() -> None:
    result = golden_same_model([0.5, 0.9, 0.1], [0.5009, 0.9, 0.1], CFG)
    assert result.passed and result.verdict == "pass"
    assert result.observed == pytest.approx(0.0009)
    assert result.threshold == 0.001


def test_same_model_fails_on_a_score_drift() -> None:
    result = golden_same_model([0.5, 0.9], [0.5, 0.9011], CFG)
    assert result.failed and result.verdict == "fail"
    assert "0.001100" in result.detail and "2 golden pairs" in result.detail


def test_same_model_fails_on_nan() -> None:
    assert golden_same_model([0.5], [math.nan], CFG).failed


def test_same_model_needs_equal_lists() -> None:
    with pytest.raises(InputError, match="3 and 2"):
        golden_same_model([0.1, 0.2, 0.3], [0.1, 0.2], CFG)


@pytest.mark.parametrize("candidate,passed", [(0.80, True), (0.79, True), (0.7899, False), (math.nan, False)])
def test_new_model_may_trail_by_the_tolerance(candidate: float, passed: bool) -> None:
    result = golden_new_model(stable_ndcg=0.80, candidate_ndcg=candidate, cfg=CFG)
    assert result.passed is passed
    assert result.threshold == pytest.approx(0.79)


def test_ndcg_at_5() -> None:
    labels = [3, 2, 0, 0, 1, 0]
    assert ndcg_at_k([6, 5, 4, 3, 2, 1], labels, 5) == pytest.approx(0.98795, abs=1e-4)
    assert ndcg_at_k([0.9, 0.8, 0.1, 0.1, 0.7, 0.0], labels, 5) == pytest.approx(1.0)
    assert ndcg_at_k([1, 2], [0, 0]) == 0.0
    with pytest.raises(InputError, match="2 and 1"):
        ndcg_at_k([1, 2], [1])


# ----- live gates ------------------------------------------------------------------------------
def paired(stable: list[float], candidate: list[float], errors: int = 0) -> PairedWindow:
    return PairedWindow(tuple(stable), tuple(candidate), len(candidate) + errors, errors)


def test_latency_is_pending_with_too_few_samples() -> None:
    n = CFG.latency_min_samples - 1
    result = latency_gate(paired([0.1] * n, [9.0] * n), CFG)
    assert result.pending and result.passed and not result.failed
    assert result.observed is None and f"waiting for {CFG.latency_min_samples}" in result.detail
    assert (result.have, result.need, result.unit) == (n, CFG.latency_min_samples, "%")


def jittered(center: float, n: int = 40, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [center * rng.uniform(0.9, 1.1) for _ in range(n)]


@pytest.mark.parametrize("slower,passed", [(1.00, True), (1.10, True), (1.30, False), (2.0, False)])
def test_latency_fails_on_a_significant_slowdown_past_the_minimum_effect(slower: float, passed: bool) -> None:
    result = latency_gate(paired(jittered(0.010, seed=1), jittered(0.010 * slower, seed=2)), CFG)
    assert result.passed is passed and not result.pending, result.detail
    assert result.threshold == pytest.approx(15.0) and result.unit == "%"
    assert result.observed == pytest.approx((slower - 1) * 100, abs=6)
    assert "Mann-Whitney" in result.detail and "ms/pair" in result.detail


def test_a_large_but_not_significant_difference_does_not_fail() -> None:
    """A noisy sample whose median is 20 % higher but whose ranks say nothing."""
    stable = [0.010, 0.030] * 10
    candidate = [0.012, 0.036, 0.008, 0.028] * 5
    result = latency_gate(paired(stable, candidate), CFG)
    assert result.passed, result.detail


def test_mann_whitney_matches_the_textbook() -> None:
    # scipy.stats.mannwhitneyu([3, 4, 5, 6, 7], [1, 2, 3, 4, 5], alternative="greater",
    # method="asymptotic") -> U=20.5, p=0.056923149003329024 (ties and continuity corrected)
    test = mann_whitney_greater([3, 4, 5, 6, 7], [1, 2, 3, 4, 5])
    assert test.u == pytest.approx(20.5) and test.p_greater == pytest.approx(0.056923149003329024, rel=1e-9)
    assert mann_whitney_greater([1, 1], [1, 1]).p_greater == 1.0
    assert mann_whitney_greater([], [1.0]).p_greater == 1.0


def test_fisher_exact_matches_known_values() -> None:
    # scipy.stats.fisher_exact([[a, n1 - a], [b, n2 - b]], alternative="greater").pvalue
    assert fisher_greater(3, 4, 1, 4) == pytest.approx(17 / 70, rel=1e-9)  # the tea-tasting table
    assert fisher_greater(5, 100, 1, 901) == pytest.approx(5.0148884696083294e-05, rel=1e-9)
    assert fisher_greater(2, 50, 0, 1000) == pytest.approx(0.0022243406418811563, rel=1e-9)
    assert fisher_greater(1, 50, 0, 1000) == pytest.approx(50 / 1050, rel=1e-9)
    assert fisher_greater(7, 200, 30, 3000) == pytest.approx(0.006918874329105472, rel=1e-6)
    assert fisher_greater(0, 10, 3, 10) == 1.0 and fisher_greater(0, 0, 3, 10) == 1.0
    with pytest.raises(ValueError, match="runs=4"):
        fisher_greater(5, 4, 0, 4)


def test_binomial_exact_matches_known_values() -> None:
    # scipy.stats.binomtest(k, n, p, alternative="greater").pvalue
    assert binomial_greater(2, 10, 0.1) == pytest.approx(0.2639010709, rel=1e-9)
    assert binomial_greater(3, 100, 0.01) == pytest.approx(0.07937320225218046, rel=1e-9)
    assert binomial_greater(0, 100, 0.01) == 1.0 and binomial_greater(1, 10, 0.0) == 0.0


def test_error_rate_gate_compares_with_the_stable() -> None:
    cfg = GateConfig(error_min_samples=100)
    stable = window(2000, 0.1)
    assert error_rate_gate(window(99, 0.1, errors=50), cfg, None, stable).pending
    # 5 % erroring: fails (5 points above the stable's 0 %, Fisher p far below 0.01)
    failed = error_rate_gate(window(200, 0.1, errors=10), cfg, None, stable)
    assert failed.failed and "10 of 200" in failed.detail and "Fisher" in failed.detail
    assert (failed.observed, failed.threshold, failed.unit) == (pytest.approx(5.0), pytest.approx(1.0), "%")
    # identical behaviour: as many errors as the stable has is no regression, at any count
    assert error_rate_gate(window(200, 0.1, errors=4), cfg, None, window(2000, 0.1, errors=40)).passed
    assert error_rate_gate(window(200, 0.1), cfg, None, stable).passed
    # above the minimum effect but not yet significant: inconclusive (pending), never a pass
    unsure = error_rate_gate(window(100, 0.1, errors=2), cfg, None, window(200, 0.1))  # p = 0.11
    assert unsure.pending and not unsure.failed and "inconclusive" in unsure.detail
    # significant but within the minimum effect (1 point): passes
    small = error_rate_gate(window(20_000, 0.1, errors=300), cfg, None, window(20_000, 0.1, errors=150))
    assert small.passed and small.observed == pytest.approx(0.75)
    # mirrored replays count: 60 live + 40 mirrored candidate runs decide together
    mirrored = error_rate_gate(window(60, 0.1), cfg, paired([0.1] * 35, [0.1] * 35, errors=5), stable)
    assert mirrored.failed and "40 mirrored" in mirrored.detail


def test_error_rate_gate_without_a_stable_baseline_tests_against_the_limit() -> None:
    cfg = GateConfig(error_min_samples=100)
    failed = error_rate_gate(window(200, 0.1, errors=10), cfg, None, window(5, 0.1))
    assert failed.failed and "binomial" in failed.detail
    assert error_rate_gate(window(200, 0.1, errors=1), cfg).passed  # 0.5 %: within the limit
    assert error_rate_gate(window(200, 0.1, errors=4), cfg).pending  # 2 %: p = 0.32, not yet


@pytest.mark.parametrize("seed", range(5))
def test_error_rate_gate_rolls_back_five_percent_and_spares_the_identical(seed: int) -> None:
    """Simulated windows: a candidate failing 5 % of 400 requests fails the gate; one failing as
    often as the stable (0.5 %) passes."""
    rng = random.Random(seed)
    draw = lambda n, rate: sum(rng.random() < rate for _ in range(n))  # noqa: E731
    stable = window(4000, 0.1, errors=draw(4000, 0.005))
    cfg = GateConfig(error_min_samples=50)
    assert error_rate_gate(window(400, 0.1, errors=draw(400, 0.05)), cfg, None, stable).failed
    assert error_rate_gate(window(400, 0.1, errors=draw(400, 0.005)), cfg, None, stable).passed


def test_slower_test_is_the_latency_rule() -> None:
    base = [0.010 + 0.001 * (i % 7) for i in range(60)]
    slow = slower_test([v * 1.3 for v in base], base, 15.0, 0.01)
    assert slow.slower and slow.slower_pct == pytest.approx(30.0) and slow.p_greater < 0.01
    assert not slower_test([v * 1.1 for v in base], base, 15.0, 0.01).slower  # within the minimum effect
    assert not slower_test(base, base, 15.0, 0.01).slower


def test_memory_growth_gate() -> None:
    base = 10_000 * 2**20  # a large process: 5% (500 MiB) is above the floor
    assert memory_gate(base, int(base * 1.05), CFG).passed
    grown = memory_gate(base, int(base * 1.06), CFG)
    assert grown.failed and grown.observed == pytest.approx(600.0, abs=0.01) and grown.unit == "MiB"
    assert grown.threshold == pytest.approx(500.0)
    assert memory_gate(0, base, CFG).pending


def test_memory_growth_gate_has_a_floor_for_small_processes() -> None:
    """A 1 GiB mini process: caches filling under traffic (+53 MiB, once a false rollback of an
    identical candidate) pass; a leak past the 256 MiB floor fails."""
    base = 1_000 * 2**20
    filled = memory_gate(base, base + 53 * 2**20, CFG)
    assert filled.passed and filled.threshold == pytest.approx(256.0) and "at least 256 MiB" in filled.detail
    assert memory_gate(base, base + 300 * 2**20, CFG).failed
    strict = GateConfig(min_memory_growth_mib=0.0)
    assert memory_gate(base, base + 53 * 2**20, strict).failed


def test_live_gates_run_only_the_named_ones() -> None:
    results = live_gates(("memory", "latency"), window(50, 0.1), paired([0.1] * 50, [0.1] * 50), 100, 100, CFG)
    assert [r.name for r in results] == ["latency", "memory_growth"]
    assert live_gates((), EMPTY_WINDOW, EMPTY_PAIRS, 0, 0, CFG) == []


def test_gate_result_is_frozen_and_serialisable() -> None:
    result = GateResult("latency", 20.0, 15.0, False, "slow", unit="%")
    assert result.to_dict() == {
        "name": "latency", "observed": 20.0, "threshold": 15.0, "passed": False,
        "pending": False, "verdict": "fail", "detail": "slow", "unit": "%",
        "observed_text": "20.0 %", "threshold_text": "15.0 %",
    }
    with pytest.raises(AttributeError):
        result.passed = True  # type: ignore[misc]


# ----- live stats ------------------------------------------------------------------------------
def test_percentile_is_the_shared_linear_one() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.5 and percentile(values, 95) == pytest.approx(95.05)
    assert percentile([], 95) == 0.0 and percentile([7.0], 95) == 7.0


def test_window_counts_errors_and_times_successes() -> None:
    stats = LiveStats()
    for i in range(20):
        stats.record("v1", latency_s=0.01 * (i + 1), ok=True, now=100.0 + i)
    stats.record("v1", latency_s=30.0, ok=False, now=120.0)
    w = stats.window("v1", since=100.0)
    assert (w.count, w.errors) == (21, 1)
    assert w.p95 == pytest.approx(0.1905) and w.p50 == pytest.approx(0.105)
    assert w.error_rate == pytest.approx(1 / 21)
    assert stats.window("v1", since=115.0).count == 6
    assert stats.window("nobody", since=0.0) == EMPTY_WINDOW


def test_window_memory_is_bounded_by_age_and_count() -> None:
    stats = LiveStats(max_age_s=10.0, max_samples=5)
    for i in range(8):
        stats.record("v1", 0.1, True, now=float(i))
    assert stats.window("v1", since=0.0).count == 5
    stats.record("v1", 0.1, True, now=100.0)
    assert stats.window("v1", since=0.0).count == 1
    stats.forget("v1")
    assert stats.versions() == []


def test_record_is_thread_safe() -> None:
    stats = LiveStats(max_age_s=1e9, max_samples=100_000)

    def hammer(version: str) -> None:
        for i in range(2_000):
            stats.record(version, 0.001, i % 10 != 0, now=float(i))

    threads = [threading.Thread(target=hammer, args=(v,)) for v in ("a", "a", "b", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.window("a", 0.0).count == 4_000 and stats.window("b", 0.0).errors == 400
