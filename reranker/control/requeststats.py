"""Aggregate queries over the request log for the metrics and experiments views.

An error is a row with status >= 500. Latency percentiles are over the rows that are not errors,
with the shared percentile of reranker.control.measures; they are None when there are no such rows.
"""
from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, TypeVar

from reranker.control.measures import percentile
from reranker.control.store import Store
from reranker.errors import InputError

ERROR_STATUS = 500
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class VersionStats:
    version: str
    count: int
    errors: int
    share: float  # fraction of all requests in the window, 0..1
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


@dataclass(frozen=True)
class ShadowStats:
    version: str  # the version that answered
    shadow_version: str
    count: int
    mean_agreement: float | None


@dataclass(frozen=True)
class SeriesPoint:
    bucket_start: float
    version: str
    count: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None


def version_stats(store: Store, since: float, until: float = math.inf) -> list[VersionStats]:
    """Per-version counts, errors, traffic share and latency over [since, until)."""
    grouped = _group(store.query(
        "SELECT version, latency_ms, status FROM request_log WHERE at >= ? AND at < ?", (since, _bound(until))
    ), key=lambda row: row["version"])
    total = sum(len(rows) for rows in grouped.values())
    out = []
    for version in sorted(grouped):
        rows = grouped[version]
        errors, latencies = _split(rows)
        out.append(VersionStats(
            version=version, count=len(rows), errors=errors, share=len(rows) / total,
            p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99),
            mean_ms=sum(latencies) / len(latencies) if latencies else None,
        ))
    return out


def latency_samples(store: Store, since: float, until: float = math.inf, limit: int = 5000) -> dict[str, list[float]]:
    """Per version, the latencies (ms) of its most recent successful requests in [since, until), at
    most `limit` each: the samples the Experiments tab's rank test compares."""
    rows = store.query(
        "SELECT version, latency_ms FROM request_log WHERE at >= ? AND at < ? AND status < ? ORDER BY at DESC",
        (since, _bound(until), ERROR_STATUS))
    out: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if len(out[row["version"]]) < limit:
            out[row["version"]].append(row["latency_ms"])
    return dict(out)


def shadow_stats(store: Store, since: float, until: float = math.inf) -> list[ShadowStats]:
    """How often and how closely each shadow version agreed with the version that answered."""
    rows = store.query(
        "SELECT version, shadow_version, COUNT(*) AS n, AVG(shadow_agreement) AS mean FROM request_log"
        " WHERE shadow_version IS NOT NULL AND at >= ? AND at < ?"
        " GROUP BY version, shadow_version ORDER BY version, shadow_version",
        (since, _bound(until)),
    )
    return [ShadowStats(r["version"], r["shadow_version"], r["n"], r["mean"]) for r in rows]


def latency_series(store: Store, since: float, bucket_s: float = 10.0, until: float = math.inf) -> list[SeriesPoint]:
    """Per version and per `bucket_s` bucket (aligned to multiples of bucket_s): count, errors, p50, p95."""
    if bucket_s <= 0:
        raise InputError(f"bucket_s must be positive, got {bucket_s!r}")
    grouped = _group(store.query(
        "SELECT version, at, latency_ms, status FROM request_log WHERE at >= ? AND at < ?", (since, _bound(until))
    ), key=lambda row: (math.floor(row["at"] / bucket_s) * bucket_s, row["version"]))
    out = []
    for bucket_start, version in sorted(grouped):
        rows = grouped[(bucket_start, version)]
        errors, latencies = _split(rows)
        out.append(SeriesPoint(bucket_start, version, len(rows), errors,
                               percentile(latencies, 50), percentile(latencies, 95)))
    return out


def _group(rows: Iterable[sqlite3.Row], key: Callable[[sqlite3.Row], K]) -> dict[K, list[sqlite3.Row]]:
    grouped: dict[K, list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        grouped[key(row)].append(row)
    return grouped


def _split(rows: list[sqlite3.Row]) -> tuple[int, list[float]]:
    """Error count, and sorted latencies of the rows that are not errors."""
    errors = sum(1 for r in rows if r["status"] >= ERROR_STATUS)
    return errors, sorted(r["latency_ms"] for r in rows if r["status"] < ERROR_STATUS)


def _bound(until: float) -> float:
    return until if math.isfinite(until) else 1e300
