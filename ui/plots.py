"""Data frames for the Experiments tab's native plots (gr.LinePlot / gr.BarPlot: time axes,
legends, tooltips, and they resize to the screen)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ui.charts import observed_share, pick

LATENCY_COLUMNS = ("time", "latency_ms", "series")


def latency_frame(series: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (time bucket, version, percentile): "mini-v1 P50", "mini-v1 P95", ..."""
    rows = []
    for row in series:
        start = pick(row, "bucket_start", "t")
        if row.get("version") is None or start is None:
            continue
        for key, label in (("p50_ms", "P50"), ("p95_ms", "P95")):
            if isinstance(row.get(key), (int, float)):
                rows.append({"time": pd.to_datetime(float(start), unit="s", utc=True), "latency_ms": float(row[key]),
                             "series": f"{row['version']} {label}"})
    return pd.DataFrame(rows, columns=list(LATENCY_COLUMNS))


def share_frame(versions: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Observed and configured traffic share per version, in percent of the window's requests."""
    rows = []
    for row in versions:
        name = str(row.get("version"))
        rows.append({"bar": f"{name} observed", "kind": "observed", "percent": observed_share(row)})
        rows.append({"bar": f"{name} configured", "kind": "configured",
                     "percent": float(row.get("configured_share") or 0.0)})
    return pd.DataFrame(rows, columns=["bar", "kind", "percent"])


def error_frame(versions: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"version": str(r.get("version")), "error_pct": float(r.get("error_rate") or 0) * 100}
                         for r in versions], columns=["version", "error_pct"])
