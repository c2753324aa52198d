import pytest

from reranker.service.agreement import ShadowStats, rank_changes, ranking, spearman, top_k_overlap
from reranker.control.gates import GateConfig
from reranker.service.experiments import Evidence, decide
from reranker.service.inputs import top_results


def test_ranking_breaks_ties_by_document_order() -> None:
    assert ranking([0.2, 0.9, 0.9, 0.1]) == [1, 2, 0, 3]
    assert top_results([0.2, 0.9, 0.5], 2) == [(1, 0.9), (2, 0.5)]


def test_overlap_and_correlation() -> None:
    assert top_k_overlap([0, 1, 2, 3], [1, 0, 3, 2], 2) == 1.0
    assert top_k_overlap([0, 1, 2, 3], [2, 3, 0, 1], 2) == 0.0
    assert spearman([0.1, 0.2, 0.3], [1, 2, 3]) == pytest.approx(1.0)
    assert spearman([0.1, 0.2, 0.3], [3, 2, 1]) == pytest.approx(-1.0)


def test_rank_changes_marks_up_down_new_dropped() -> None:
    changes = {c.index: c.mark for c in rank_changes([0, 1, 2, 3], [1, 0, 3, 2], k=2)}
    assert changes == {1: "up", 0: "down", 3: "same", 2: "same"}
    changes = {c.index: c.mark for c in rank_changes([0, 1, 2], [2, 0, 1], k=2)}
    assert changes == {2: "new", 0: "down", 1: "dropped"}


def test_shadow_stats_average_per_pair() -> None:
    stats = ShadowStats()
    stats.record("a", "b", 1.0, 0.5)
    stats.record("a", "b", 0.0, 1.0)
    [row] = stats.summary()
    assert row.requests == 2 and row.top_k_overlap == 0.5 and row.rank_correlation == 0.75


def _ev(version: str, requests: int = 100, p95: float = 10.0, ndcg: float = 0.8, mem: int = 100, err: float = 0.0,
        slower: float = 1.0) -> Evidence:
    latencies = [(8.0 + (i % 10) * 0.5) * slower for i in range(requests)]  # ms, a spread like real traffic
    return Evidence(version, requests, err, p95, mem, ndcg, latencies)


def test_decision_promotes_only_with_clear_gain() -> None:
    assert decide(_ev("s"), _ev("c", ndcg=0.84))["verdict"] == "promote"
    assert decide(_ev("s"), _ev("c", ndcg=0.81))["verdict"] == "keep stable"  # +1.25% < +3%
    assert decide(_ev("s"), _ev("c", ndcg=0.9, slower=1.3))["verdict"] == "keep stable"  # +30% latency
    assert decide(_ev("s", requests=400), _ev("c", requests=400, ndcg=0.9, err=0.05))["verdict"] == "keep stable"
    assert decide(_ev("s"), _ev("c", requests=3, ndcg=0.9))["verdict"] == "inconclusive"
    rows = decide(_ev("s"), _ev("c", ndcg=0.84))["rows"]
    assert {r["criterion"] for r in rows} >= {"latency change (median)", "error rate change (vs stable)", "memory change"}


def test_decision_latency_uses_the_rollout_gate_rule() -> None:
    """The same test and minimum effect as the latency gate: a P95 tail alone decides nothing; a
    slowdown within the minimum effect passes however significant; past it, it fails."""
    row = lambda d: next(r for r in d["rows"] if r["criterion"] == "latency change (median)")  # noqa: E731
    tail = _ev("c", ndcg=0.9, p95=40.0)  # same latency distribution, different P95 figure
    assert row(decide(_ev("s"), tail))["passed"] is True
    within = row(decide(_ev("s", requests=2000), _ev("c", requests=2000, ndcg=0.9, slower=1.10)))
    assert within["passed"] is True and within["observed"] == pytest.approx(0.10, abs=0.01)
    slow = row(decide(_ev("s"), _ev("c", ndcg=0.9, slower=1.3)))
    assert slow["passed"] is False and "Mann-Whitney" in slow["detail"] and "request latency" in slow["detail"]
    assert "+15%" in slow["threshold"]
    # a gate config with another minimum effect moves the line
    assert row(decide(_ev("s"), _ev("c", ndcg=0.9, slower=1.3), GateConfig(latency_ratio=1.5)))["passed"] is True


def test_decision_error_rate_uses_the_rollout_gate_rule() -> None:
    row = lambda d: next(r for r in d["rows"] if r["criterion"] == "error rate change (vs stable)")  # noqa: E731
    same = row(decide(_ev("s", requests=1000, err=0.02), _ev("c", requests=200, err=0.02)))
    assert same["passed"] is True  # as bad as the stable: not a regression
    worse = row(decide(_ev("s", requests=1000), _ev("c", requests=200, err=0.05)))
    assert worse["passed"] is False and "Fisher" in worse["detail"] and worse["observed"] == pytest.approx(0.05)
    unsure = row(decide(_ev("s", requests=1000), _ev("c", requests=20, err=0.05)))  # 1 of 20: not significant
    assert unsure["passed"] is None
