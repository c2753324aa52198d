import pytest

from reranker.service.agreement import ShadowStats, rank_changes, ranking, spearman, top_k_overlap
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


def _ev(version: str, requests: int = 100, p95: float = 10.0, ndcg: float = 0.8, mem: int = 100, err: float = 0.0) -> Evidence:
    return Evidence(version, requests, err, p95, mem, ndcg)


def test_decision_promotes_only_with_clear_gain() -> None:
    assert decide(_ev("s"), _ev("c", ndcg=0.84))["verdict"] == "promote"
    assert decide(_ev("s"), _ev("c", ndcg=0.81))["verdict"] == "keep stable"  # +1.25% < +3%
    assert decide(_ev("s"), _ev("c", ndcg=0.9, p95=12.0))["verdict"] == "keep stable"  # +20% latency
    assert decide(_ev("s"), _ev("c", ndcg=0.9, err=0.05))["verdict"] == "keep stable"
    assert decide(_ev("s"), _ev("c", requests=3, ndcg=0.9))["verdict"] == "inconclusive"
    rows = decide(_ev("s"), _ev("c", ndcg=0.84))["rows"]
    assert {r["criterion"] for r in rows} >= {"latency P95 change", "error rate", "memory change"}
