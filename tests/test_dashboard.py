"""The Grafana dashboard under assets/grafana only queries series that /metrics exports, with
labels those series carry."""
from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[1] / "assets" / "grafana" / "reranker-dashboard.json"
SERIES = re.compile(r"\b((?:reranker|process)_[a-z_]+)\b")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\b((?:reranker|process)_[a-z_]+)\{([^}]*)\}")
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def exported(client: TestClient) -> dict[str, set[str]]:
    """Every sample name /metrics can export, with its label names (families without samples yet
    count with their declared suffixes)."""
    client.post("/v1/rerank", json={"query": "a cat", "documents": ["a tabby cat"]})
    client.get("/v1/no-such-route")
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        kinds = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        for suffix in kinds.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def test_every_query_names_an_exported_series(client: TestClient) -> None:
    names = exported(client)
    exprs = queries()
    assert len(exprs) >= 10
    for expr in exprs:
        used = SERIES.findall(expr)
        assert used, expr
        for name in used:
            assert name in names, f"{name} (in {expr!r}) is not exported by /metrics"


def test_labels_in_queries_exist_on_their_series(client: TestClient) -> None:
    names = exported(client)
    for expr in queries():
        for name, matchers in MATCHERS.findall(expr):
            for label in re.findall(r"(\w+)\s*=~?", matchers):
                assert not names[name] or label in names[name], f"{name} has no label {label!r} ({expr!r})"
        series = SERIES.findall(expr)
        if not all(names[n] for n in series):
            continue  # a family with no samples yet (e.g. no error so far) shows no label names
        labels = set().union(*(names[n] for n in series)) | {"le"}
        for group in GROUPING.findall(expr):
            for label in (g.strip() for g in group.split(",") if g.strip()):
                assert label in labels, f"'by ({group})' names {label!r}, which {series} do not carry"


def test_dashboard_covers_the_operator_questions() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("traffic share", "p50", "p95", "errors", "rollout", "swap"):
        assert topic in titles, topic
