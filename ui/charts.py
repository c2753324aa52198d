"""Pure SVG/HTML charts for the Experiments tab; every mark carries data-version for tests. Text takes
the theme's colour (assets/ui.css), so the charts read in light and dark mode."""
from __future__ import annotations

import time
from html import escape
from typing import Any, Mapping, Sequence

from ui.render import attr, note_html

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2")
WIDTH, HEIGHT, PAD = 520, 180, 36


def colour_of(version: str, versions: Sequence[str]) -> str:
    ordered = sorted(set(versions))
    return PALETTE[ordered.index(version) % len(PALETTE)] if version in ordered else PALETTE[0]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def pick(row: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` that row has a value for (the report's names, then older aliases)."""
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _legend(versions: Sequence[str]) -> str:
    keys = "".join(
        f'<span class="rr-key" data-version="{attr(v)}"><span class="rr-swatch" style="background:{colour_of(v, versions)}">'
        f"</span>{escape(v)}</span>"
        for v in sorted(set(versions))
    )
    return f'<div class="rr-legend">{keys}</div>'


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def _tick(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _frame(testid: str, title: str, body: str, y_max: float, unit: str, versions: Sequence[str]) -> str:
    axis = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 8}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<text x="2" y="16" font-size="10">{_tick(y_max)}{escape(unit)}</text>'
        f'<text x="2" y="{(HEIGHT - PAD + 16) / 2:.0f}" font-size="10">{_tick(y_max / 2)}</text>'
        f'<text x="2" y="{HEIGHT - PAD}" font-size="10">0</text>'
    )
    return (
        f'<figure class="rr-chart" data-testid="{attr(testid)}"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{attr(title)}">{axis}{body}</svg>'
        f"{_legend(versions)}</figure>"
    )


def latency_chart(series: Sequence[Mapping[str, Any]]) -> str:
    """P50 (solid) and P95 (dashed) latency per version over time."""
    rows = [r for r in series if r.get("version") is not None and r.get("p50_ms") is not None]
    if not rows:
        return note_html("No requests in the window yet: latency will appear here.")
    versions = [str(r["version"]) for r in rows]
    times = [_num(pick(r, "bucket_start", "t")) for r in rows]
    t0, t1 = min(times), max(times)
    y_max = max(max(_num(r.get("p95_ms")), _num(r.get("p50_ms"))) for r in rows) or 1.0

    def point(row: Mapping[str, Any], key: str) -> tuple[float, float]:
        x = PAD + (_num(pick(row, "bucket_start", "t")) - t0) / ((t1 - t0) or 1.0) * (WIDTH - PAD - 12)
        y = HEIGHT - PAD - _num(pick(row, key, "p50_ms")) / y_max * (HEIGHT - PAD - 12)
        return x, y

    body = []
    for version in sorted(set(versions)):
        mine = sorted((r for r in rows if str(r["version"]) == version), key=lambda r: _num(pick(r, "bucket_start", "t")))
        colour = colour_of(version, versions)
        for key, dash in (("p50_ms", ""), ("p95_ms", ' stroke-dasharray="4 3"')):
            points = [point(r, key) for r in mine]
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points)
            body.append(
                f'<g data-version="{attr(version)}" data-series="{key}" data-points="{len(mine)}">'
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{line}"/>{dots}</g>'
            )
    ticks = "".join(
        f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="{anchor}">{_clock(t)}</text>'
        for x, t, anchor in ((PAD, t0, "start"), (WIDTH - 12, t1, "end")) if t1 > t0 or anchor == "start")
    title = "Latency over time (ms; time in UTC): P50 solid, P95 dashed"
    return _frame("latency-chart", title, "".join(body) + ticks, y_max, " ms", versions)


def bar_chart(values: Mapping[str, float], testid: str, title: str, unit: str, y_max: float | None = None) -> str:
    """One bar per version."""
    if not values:
        return note_html(f"{title}: no data yet.")
    versions = list(values)
    top = y_max or max(values.values()) or 1.0
    slot = (WIDTH - PAD - 12) / len(versions)
    body = []
    for i, version in enumerate(sorted(versions)):
        value = values[version]
        height = min(value / top, 1.0) * (HEIGHT - PAD - 12)
        x = PAD + i * slot + slot * 0.2
        body.append(
            f'<g data-version="{attr(version)}" data-value="{value:.4g}"><rect x="{x:.1f}" y="{HEIGHT - PAD - height:.1f}"'
            f' width="{slot * 0.6:.1f}" height="{height:.1f}" fill="{colour_of(version, versions)}"/>'
            f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" font-size="11">{escape(version)}: {value:.3g}{escape(unit)}</text></g>'
        )
    return _frame(testid, title, "".join(body), top, unit, versions)


def histogram(scores: Mapping[str, Sequence[float]], bins: int = 10) -> str:
    """Score distribution per version: bins over [0, 1], bars side by side within each bin."""
    versions = [v for v, s in scores.items() if s]
    if not versions:
        return note_html("Score distribution: no scores yet.")
    counts = {v: [0] * bins for v in versions}
    for version in versions:
        for score in scores[version]:
            counts[version][min(max(int(score * bins), 0), bins - 1)] += 1
    fractions = {v: [c / len(scores[v]) for c in counts[v]] for v in versions}
    top = max(max(f) for f in fractions.values()) or 1.0
    slot = (WIDTH - PAD - 12) / bins
    body = []
    for j, version in enumerate(sorted(versions)):
        width = slot * 0.8 / len(versions)
        rects = "".join(
            f'<rect x="{PAD + b * slot + j * width:.1f}" y="{HEIGHT - PAD - f / top * (HEIGHT - PAD - 12):.1f}"'
            f' width="{width:.1f}" height="{f / top * (HEIGHT - PAD - 12):.1f}" fill="{colour_of(version, versions)}"/>'
            for b, f in enumerate(fractions[version])
        )
        body.append(f'<g data-version="{attr(version)}" data-count="{len(scores[version])}">{rects}</g>')
    ticks = "".join(
        f'<text x="{PAD + b * slot:.1f}" y="{HEIGHT - PAD + 14}" font-size="10">{b / bins:.1f}</text>' for b in range(bins)
    )
    return _frame("score-chart", "Score distribution (share of scores per bin)", "".join(body) + ticks, top, "", versions)


def _ms(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "—"


def observed_share(row: Mapping[str, Any]) -> float:
    """Percent of the window's requests this version answered."""
    fraction = row.get("observed_share")
    return _num(fraction) * 100 if fraction is not None else _num(row.get("share"))


def stats_table(versions: Sequence[Mapping[str, Any]]) -> str:
    if not versions:
        return note_html("No per-version statistics yet.")
    rows = "".join(
        f'<tr data-version="{attr(v.get("version", ""))}" data-count="{int(_num(pick(v, "requests", "count")))}">'
        f'<td><b>{escape(str(v.get("version")))}</b></td><td>{int(_num(pick(v, "requests", "count")))}</td>'
        f'<td>{int(_num(v.get("errors")))}</td><td>{_num(v.get("error_rate")) * 100:.1f}%</td>'
        f'<td>{_ms(v.get("p50_ms"))}</td><td>{_ms(v.get("p95_ms"))}</td>'
        f'<td>{_num(v.get("configured_share")):.0f}%</td><td>{observed_share(v):.0f}%</td></tr>'
        for v in versions
    )
    head = ("<tr><th>version</th><th>requests</th><th>errors</th><th>error rate</th><th>P50 ms</th><th>P95 ms</th>"
            "<th>configured share</th><th>observed share</th></tr>")
    return f'<div class="rr-table-wrap"><table class="rr-table" data-testid="version-stats">{head}{rows}</table></div>'


def shadow_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Live shadow agreement rows (primary, shadow, requests, top_k_overlap, rank_correlation)."""
    if not rows:
        return note_html("No shadow traffic: pick a shadow version to compare answers without serving them.")
    body = "".join(
        f'<tr data-primary="{attr(pick(r, "primary", "version") or "")}" data-shadow="{attr(pick(r, "shadow", "shadow_version") or "")}">'
        f'<td>{escape(str(pick(r, "primary", "version")))}</td><td>{escape(str(pick(r, "shadow", "shadow_version")))}</td>'
        f'<td>{int(_num(pick(r, "requests", "count")))}</td><td>{_num(pick(r, "top_k_overlap", "mean_agreement")):.2f}</td>'
        f'<td>{_observed(r.get("rank_correlation"))}</td></tr>'
        for r in rows
    )
    head = "<tr><th>primary</th><th>shadow</th><th>requests</th><th>top-5 overlap</th><th>rank correlation</th></tr>"
    return f'<div class="rr-table-wrap"><table class="rr-table" data-testid="shadow">{head}{body}</table></div>'


def _verdict_cell(passed: Any) -> tuple[str, str]:
    if passed is None:
        return "unknown", "?"
    return ("true", "✔") if passed else ("false", "✘")


def _observed(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if isinstance(value, float) else escape(str(value))


def _percent(criterion: str, value: Any) -> str:
    """The decision's observed fractions in the unit of its thresholds: percent (signed for changes)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—"
    return f"{value * 100:+.1f}%" if "change" in criterion else f"{value * 100:.2f}%"


def decision_html(decision: Mapping[str, Any]) -> str:
    verdict = str(decision.get("verdict") or "inconclusive")
    rows = []
    for row in decision.get("rows") or ():
        passed, mark = _verdict_cell(row.get("passed"))
        rows.append(
            f'<tr data-criterion="{attr(row.get("criterion", ""))}" data-passed="{passed}">'
            f'<td>{escape(str(row.get("criterion")))}</td><td>{_percent(str(row.get("criterion")), row.get("observed"))}</td>'
            f'<td>{escape(str(row.get("threshold", "")))}</td><td>{mark}</td>'
            f'<td>{escape(str(row.get("detail") or ""))}</td></tr>'
        )
    head = "<tr><th>criterion</th><th>observed</th><th>threshold</th><th>passed</th><th>detail</th></tr>"
    return (
        f'<div class="rr-decision" data-testid="decision" data-verdict="{attr(verdict)}"'
        f' data-candidate="{attr(decision.get("candidate") or "")}">'
        f'<div class="rr-verdict rr-verdict-{attr(verdict.replace(" ", "-"))}">Verdict: <b>{escape(verdict)}</b>'
        f' (candidate {escape(str(decision.get("candidate") or "—"))} vs stable {escape(str(decision.get("stable") or "—"))})</div>'
        f'<div class="rr-table-wrap"><table class="rr-table">{head}{"".join(rows)}</table></div></div>'
    )
