"""Charts for the Experiments tab, as plain HTML and SVG (no script, nothing from a CDN).

A chart is a grid: y tick labels on the left, the plot area, time (or score) tick labels below,
then a legend with one key per version. The plot area is an SVG whose 1000 x 1000 user space is
stretched to the box (`preserveAspectRatio="none"`) with non-scaling strokes, so it fills any
width at a fixed height and its lines stay crisp; every label is HTML text, so it never stretches.
Every mark has a `<title>` (the browser's tooltip) and `data-version`; colours and text come from
Gradio's theme variables (assets/ui.css: `.rr-c0` ... `.rr-c5`), so light and dark mode both read.
"""
from __future__ import annotations

import math
import time
from html import escape
from typing import Any, Iterable, Mapping, Sequence

from ui.render import attr, note_html

SERIES_COLOURS = 6  # .rr-c0 ... .rr-c5 in assets/ui.css
VIEW = 1000.0  # user units of the plot area on each axis
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
Point = tuple[float, float, str]  # x (0..1), y value, tooltip


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def pick(row: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` that row has a value for (the report's names, then older aliases)."""
    return next((row[k] for k in keys if row.get(k) is not None), None)


def series_class(version: str, versions: Iterable[str]) -> str:
    """The colour class of a version: stable across charts (by sorted version id)."""
    ordered = sorted(set(versions))
    return f"rr-c{ordered.index(version) % SERIES_COLOURS}" if version in ordered else "rr-c0"


# ---- axes ------------------------------------------------------------------------------------
def nice_step(span: float, count: int) -> float:
    """A 1, 2, 2.5 or 5 x 10^k step that cuts `span` into at most about `count` parts."""
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))


def value_ticks(top: float, count: int = 4, headroom: float = 1.0) -> list[float]:
    """0, step, ... up to the first tick at or above `top` x `headroom` (the axis maximum)."""
    top = top * headroom if top > 0 else 1.0
    step = nice_step(top, count)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def with_unit(value: float, unit: str, step: float = 1.0) -> str:
    """A tick or tooltip figure with its unit: "150 ms", "50%", "2.5 req/s"."""
    decimals = 0 if float(step).is_integer() else 1 if float(step * 10).is_integer() else 2
    text = f"{value:.{decimals}f}"
    return f"{text}%" if unit == "%" else f"{text} {unit}" if unit else text


def _measure(value: float, unit: str) -> str:
    return with_unit(value, unit, 1.0 if abs(value) >= 10 else 0.1 if abs(value) >= 1 else 0.01)


def time_ticks(span_s: float, count: int = 5) -> list[float]:
    """Offsets before the window's end (0 = now, negative = earlier), a round step apart."""
    step = next((s for s in TIME_STEPS if span_s / s <= count), TIME_STEPS[-1])
    return [-k * step for k in range(int(span_s // step), -1, -1)]


def ago(offset_s: float, step_s: float = 1.0) -> str:
    """An offset before now as a tick label in the unit of the axis' step: "now", "−45 s", "−5 min", "−2 h"."""
    seconds = -offset_s
    if seconds <= 0:
        return "now"
    if step_s >= 3600 and seconds % 3600 == 0:
        return f"−{seconds / 3600:.0f} h"
    if step_s >= 60 and seconds % 60 == 0:
        return f"−{seconds / 60:.0f} min"
    return f"−{seconds:.0f} s"


def clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def duration_words(seconds: float) -> str:
    if seconds < 300:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def window_words(window: Mapping[str, Any]) -> str:
    """ "the last 150 s (since the traffic policy changed at 12:03:10 UTC)" """
    start, seconds = _num(window.get("start")), _num(window.get("seconds"))
    if window.get("since_policy_change"):
        return f"the last {duration_words(seconds)} (since the traffic policy changed at {clock(start)} UTC)"
    return f"the last {duration_words(seconds)} (since {clock(start)} UTC)"


class TimeAxis:
    """The x axis of a time chart: the report's window (or, without one, the buckets' span)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], window: Mapping[str, Any] | None,
                 bucket_s: float | None) -> None:
        starts = sorted({_num(pick(r, "bucket_start", "t")) for r in rows})
        gaps = [b - a for a, b in zip(starts, starts[1:]) if b > a]
        self.bucket = float(bucket_s) if bucket_s and bucket_s > 0 else (min(gaps) if gaps else 10.0)
        if window and all(isinstance(window.get(k), (int, float)) for k in ("start", "end")):
            self.start, self.end = float(window["start"]), float(window["end"])
        else:
            self.start, self.end = (starts[0], starts[-1] + self.bucket) if starts else (0.0, 1.0)
        self.span = max(self.end - self.start, 1e-6)

    def x(self, bucket_start: float) -> float:
        """Where a bucket's point sits (its middle, inside the window), 0..1."""
        middle = min(max(bucket_start + self.bucket / 2, self.start), self.end)
        return (middle - self.start) / self.span

    def seconds_in(self, bucket_start: float) -> float:
        """How much of the bucket lies inside the window (the last one is still filling)."""
        return max(min(bucket_start + self.bucket, self.end) - max(bucket_start, self.start), 1e-6)

    def label(self, bucket_start: float) -> str:
        return f"{clock(bucket_start)}–{clock(bucket_start + self.bucket)} UTC"

    def ticks(self) -> list[tuple[float, str]]:
        offsets = time_ticks(self.span)
        step = offsets[-1] - offsets[-2] if len(offsets) > 1 else 1.0
        return [(1 + offset / self.span, ago(offset, step)) for offset in offsets]


def _buckets(rows: Sequence[Mapping[str, Any]]) -> dict[float, dict[str, Mapping[str, Any]]]:
    """bucket start -> version -> that bucket's row."""
    out: dict[float, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("version") is not None:
            out.setdefault(_num(pick(row, "bucket_start", "t")), {})[str(row["version"])] = row
    return dict(sorted(out.items()))


def _y(value: float, top: float) -> float:
    return VIEW - min(max(value / top, 0.0), 1.0) * VIEW


def _series(version: str, versions: Sequence[str], key: str, points: Sequence[Point], top: float,
            dashed: bool = False) -> str:
    coords = [(x * VIEW, _y(y, top), tip) for x, y, tip in sorted(points)]
    line = " L".join(f"{x:.1f} {y:.1f}" for x, y, _ in coords)
    dots = "".join(f'<path class="rr-dot" d="M{x:.1f} {y:.1f}h0"><title>{escape(tip)}</title></path>'
                   for x, y, tip in coords)
    style = " rr-dashed" if dashed else ""
    return (f'<g class="rr-series {series_class(version, versions)}" data-version="{attr(version)}"'
            f' data-series="{attr(key)}" data-points="{len(coords)}"><path class="rr-line{style}" d="M{line}"/>{dots}</g>')


def _legend(keys: Sequence[tuple[str, str]], versions: Sequence[str], styles: str = "") -> str:
    items = "".join(
        f'<span class="rr-key {series_class(v, versions)}" data-version="{attr(v)}"><span class="rr-swatch"></span>'
        f'<b>{escape(v)}</b>{f" <span class=rr-key-note>{escape(text)}</span>" if text else ""}</span>'
        for v, text in keys
    )
    return f'<div class="rr-legend" data-testid="legend">{items}{styles}</div>'


LINE_STYLES = ('<span class="rr-key"><span class="rr-stroke"></span>P50</span>'
               '<span class="rr-key"><span class="rr-stroke rr-stroke-dashed"></span>P95</span>')


def _figure(testid: str, title: str, unit: str, body: str, y_ticks: Sequence[float],
            x_ticks: Sequence[tuple[float, str]], legend: str, x_kind: str = "time") -> str:
    top = y_ticks[-1] if y_ticks else 1.0
    step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else top
    grid = "".join(f'<path class="rr-grid" d="M0 {_y(v, top):.1f} H{VIEW:.0f}"/>' for v in y_ticks[1:])
    ys = "".join(f'<span class="rr-tick rr-ytick" data-testid="y-tick" style="top:{_y(v, top) / VIEW * 100:.2f}%">'
                 f"{escape(with_unit(v, unit, step))}</span>" for v in y_ticks)
    xs = "".join(f'<span class="rr-tick rr-xtick" data-testid="x-tick" style="left:{frac * 100:.2f}%">{escape(text)}</span>'
                 for frac, text in x_ticks if -1e-9 <= frac <= 1 + 1e-9)
    return (
        f'<figure class="rr-chart" data-testid="{attr(testid)}" data-unit="{attr(unit)}" data-x="{attr(x_kind)}">'
        f"<figcaption>{escape(title)}</figcaption>"
        f'<div class="rr-plot"><div class="rr-yaxis">{ys}</div>'
        f'<div class="rr-area"><svg viewBox="0 0 {VIEW:.0f} {VIEW:.0f}" preserveAspectRatio="none" role="img"'
        f' aria-label="{attr(title)}">{grid}{body}</svg></div>'
        f'<div class="rr-xaxis">{xs}</div></div>{legend}</figure>'
    )


def _empty(testid: str, title: str, message: str) -> str:
    return (f'<figure class="rr-chart rr-chart-empty" data-testid="{attr(testid)}"><figcaption>{escape(title)}</figcaption>'
            f"{note_html(message)}</figure>")


def _ms(value: Any) -> str:
    return _measure(_num(value), "ms") if isinstance(value, (int, float)) else "—"


LATENCY_TITLE = "Latency per version (ms): P50 solid, P95 dashed"


def latency_chart(series: Sequence[Mapping[str, Any]], window: Mapping[str, Any] | None = None,
                  bucket_s: float | None = None) -> str:
    """P50 (solid) and P95 (dashed) latency per version over the window."""
    rows = [r for r in series if r.get("version") is not None and r.get("p50_ms") is not None]
    if not rows:
        return _empty("latency-chart", LATENCY_TITLE, "No requests in the window yet: latency will appear here.")
    axis = TimeAxis(rows, window, bucket_s)
    versions = sorted({str(r["version"]) for r in rows})
    ticks = value_ticks(max(max(_num(r.get("p95_ms")), _num(r.get("p50_ms"))) for r in rows), headroom=1.05)
    body = []
    for version in versions:
        mine = [r for r in rows if str(r["version"]) == version]
        for key, dashed in (("p50_ms", False), ("p95_ms", True)):
            points = [(axis.x(_num(pick(r, "bucket_start", "t"))), _num(pick(r, key, "p50_ms")),
                       f"{version} · {axis.label(_num(pick(r, 'bucket_start', 't')))} · P50 {_ms(r.get('p50_ms'))}"
                       f" · P95 {_ms(r.get('p95_ms'))} · {int(_num(r.get('count')))} requests") for r in mine]
            body.append(_series(version, versions, key, points, ticks[-1], dashed))
    worst = {v: max(_num(r.get("p95_ms")) for r in rows if str(r["version"]) == v) for v in versions}
    legend = _legend([(v, f"P95 up to {_ms(worst[v])}") for v in versions], versions, LINE_STYLES)
    return _figure("latency-chart", LATENCY_TITLE, "ms", "".join(body), ticks, axis.ticks(), legend)


def observed_share(row: Mapping[str, Any]) -> float:
    """Percent of the window's requests this version answered."""
    fraction = row.get("observed_share")
    return _num(fraction) * 100 if fraction is not None else _num(row.get("share"))


SHARE_TITLE = "Traffic share per version (% of requests; dotted: the policy's share)"


def share_chart(series: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]] = (),
                window: Mapping[str, Any] | None = None, bucket_s: float | None = None) -> str:
    """Each version's share of every bucket's requests, beside the share the policy gives it."""
    buckets = _buckets([r for r in series if _num(r.get("count")) > 0])
    if not buckets:
        return _empty("share-chart", SHARE_TITLE, "No requests in the window yet: the traffic split will appear here.")
    axis = TimeAxis([{"bucket_start": b} for b in buckets], window, bucket_s)
    versions = sorted({v for by_version in buckets.values() for v in by_version})
    configured = {str(r.get("version")): _num(r.get("configured_share")) for r in rows}
    ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
    body = []
    for version in versions:
        points = []
        for start, by_version in buckets.items():
            total = sum(_num(r.get("count")) for r in by_version.values())
            mine = _num(by_version[version].get("count")) if version in by_version else 0.0
            points.append((axis.x(start), mine / total * 100,
                           f"{version} · {axis.label(start)} · {mine / total * 100:.0f}% ({mine:.0f} of {total:.0f} requests)"))
        reference = ""
        if version in configured:
            y = _y(configured[version], 100.0)
            reference = (f'<path class="rr-ref {series_class(version, versions)}" d="M0 {y:.1f} H{VIEW:.0f}">'
                         f"<title>{escape(version)}: the policy gives it {configured[version]:.0f}%</title></path>")
        body.append(reference + _series(version, versions, "share", points, 100.0))
    observed = {str(r.get("version")): observed_share(r) for r in rows}
    keys = [(v, f"{observed[v]:.0f}% of the window" + (f" (policy {configured[v]:.0f}%)" if v in configured else ""))
            if v in observed else (v, "") for v in versions]
    return _figure("share-chart", SHARE_TITLE, "%", "".join(body), ticks, axis.ticks(), _legend(keys, versions))


RATE_TITLE = "Requests per second per version (req/s)"


def rate_chart(series: Sequence[Mapping[str, Any]], window: Mapping[str, Any] | None = None,
               bucket_s: float | None = None) -> str:
    """Requests per second each version answered, per bucket."""
    rows = [r for r in series if r.get("version") is not None and _num(r.get("count")) > 0]
    if not rows:
        return _empty("rate-chart", RATE_TITLE, "No requests in the window yet: throughput will appear here.")
    axis = TimeAxis(rows, window, bucket_s)
    versions = sorted({str(r["version"]) for r in rows})

    def rate(row: Mapping[str, Any]) -> float:
        return _num(row.get("count")) / axis.seconds_in(_num(pick(row, "bucket_start", "t")))

    ticks = value_ticks(max(rate(r) for r in rows), headroom=1.05)
    body = []
    for version in versions:
        points = [(axis.x(_num(pick(r, "bucket_start", "t"))), rate(r),
                   f"{version} · {axis.label(_num(pick(r, 'bucket_start', 't')))} · {_measure(rate(r), 'req/s')}"
                   f" ({int(_num(r.get('count')))} requests)") for r in rows if str(r["version"]) == version]
        body.append(_series(version, versions, "rate", points, ticks[-1]))
    totals = {v: sum(_num(r.get("count")) for r in rows if str(r["version"]) == v) for v in versions}
    legend = _legend([(v, f"{_measure(totals[v] / axis.span, 'req/s')} on average") for v in versions], versions)
    return _figure("rate-chart", RATE_TITLE, "req/s", "".join(body), ticks, axis.ticks(), legend)


ERROR_TITLE = "Error rate per version (% of requests)"


def error_chart(series: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]] = (),
                window: Mapping[str, Any] | None = None, bucket_s: float | None = None) -> str:
    """The share of each bucket's requests that failed, per version (axis at least 0-5%)."""
    points_of = [r for r in series if r.get("version") is not None and _num(r.get("count")) > 0]
    if not points_of:
        return _empty("error-chart", ERROR_TITLE, "No requests in the window yet: errors will appear here.")
    axis = TimeAxis(points_of, window, bucket_s)
    versions = sorted({str(r["version"]) for r in points_of})

    def percent(row: Mapping[str, Any]) -> float:
        return _num(row.get("errors")) / _num(row.get("count")) * 100

    ticks = value_ticks(max(5.0, *(percent(r) for r in points_of)))
    body = []
    for version in versions:
        points = [(axis.x(_num(pick(r, "bucket_start", "t"))), percent(r),
                   f"{version} · {axis.label(_num(pick(r, 'bucket_start', 't')))} · {percent(r):.1f}% errors"
                   f" ({int(_num(r.get('errors')))} of {int(_num(r.get('count')))} requests)")
                  for r in points_of if str(r["version"]) == version]
        body.append(_series(version, versions, "error_rate", points, ticks[-1]))
    summary = {str(r.get("version")): r for r in rows}
    keys = [(v, f"{_num(summary[v].get('error_rate')) * 100:.1f}% over the window ({int(_num(summary[v].get('errors')))}"
                f" of {int(_num(pick(summary[v], 'requests', 'count')))})") if v in summary else (v, "") for v in versions]
    return _figure("error-chart", ERROR_TITLE, "%", "".join(body), ticks, axis.ticks(), _legend(keys, versions))


SCORE_TITLE = "Score distribution per version (% of each version's recent scores per bin)"


def histogram(scores: Mapping[str, Sequence[float]], bins: int = 10) -> str:
    """Score distribution per version: bins over [0, 1], bars side by side within each bin."""
    versions = sorted(v for v, s in scores.items() if s)
    if not versions:
        return _empty("score-chart", SCORE_TITLE, "No scores yet: rank something to see their distribution.")
    percents = {}
    for version in versions:
        counts = [0] * bins
        for score in scores[version]:
            counts[min(max(int(score * bins), 0), bins - 1)] += 1
        percents[version] = [c / len(scores[version]) * 100 for c in counts]
    ticks = value_ticks(max(max(p) for p in percents.values()))
    width = 0.8 / len(versions) / bins * VIEW
    body = []
    for j, version in enumerate(versions):
        rects = "".join(
            f'<rect class="rr-column" x="{(b + 0.1) / bins * VIEW + j * width:.1f}" y="{_y(p, ticks[-1]):.1f}"'
            f' width="{width:.1f}" height="{VIEW - _y(p, ticks[-1]):.1f}"><title>{escape(version)} · scores'
            f" {b / bins:.1f}–{(b + 1) / bins:.1f} · {p:.0f}% ({round(p * len(scores[version]) / 100)} of"
            f" {len(scores[version])})</title></rect>"
            for b, p in enumerate(percents[version])
        )
        body.append(f'<g class="rr-series {series_class(version, versions)}" data-version="{attr(version)}"'
                    f' data-count="{len(scores[version])}">{rects}</g>')
    x_ticks = [(b / bins, f"{b / bins:.1f}") for b in range(0, bins + 1, 2)]
    medians = {v: sorted(scores[v])[len(scores[v]) // 2] for v in versions}
    legend = _legend([(v, f"{len(scores[v])} scores, median {medians[v]:.2f}") for v in versions], versions)
    return _figure("score-chart", SCORE_TITLE, "%", "".join(body), ticks, x_ticks, legend, x_kind="score")


def stacked_table(testid: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A table whose rows become labelled cards on a phone (assets/ui.css, .rr-stack): each cell
    carries its column's name. rows: (the <tr>'s attributes, its cells' HTML)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr {attrs}>" + "".join(f'<td data-label="{attr(c)}">{cell}</td>' for c, cell in zip(columns, cells)) + "</tr>"
        for attrs, cells in rows
    )
    return (f'<div class="rr-table-wrap"><table class="rr-table rr-stack" data-testid="{attr(testid)}">'
            f"<tr>{head}</tr>{body}</table></div>")


STATS_COLUMNS = ("version", "requests", "errors", "error rate", "P50 latency", "P95 latency", "configured share",
                 "observed share")


def stats_table(versions: Sequence[Mapping[str, Any]]) -> str:
    if not versions:
        return note_html("No per-version statistics yet.")
    rows = [(f'data-version="{attr(v.get("version", ""))}" data-count="{int(_num(pick(v, "requests", "count")))}"',
             (f'<b>{escape(str(v.get("version")))}</b>', str(int(_num(pick(v, "requests", "count")))),
              str(int(_num(v.get("errors")))), f'{_num(v.get("error_rate")) * 100:.1f}%', _ms(v.get("p50_ms")),
              _ms(v.get("p95_ms")), f'{_num(v.get("configured_share")):.0f}%', f"{observed_share(v):.0f}%"))
            for v in versions]
    return stacked_table("version-stats", STATS_COLUMNS, rows)


SHADOW_COLUMNS = ("primary", "shadow", "requests", "top-5 overlap", "rank correlation")


def shadow_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Live shadow agreement rows (primary, shadow, requests, top_k_overlap, rank_correlation)."""
    if not rows:
        return note_html("No shadow traffic: pick a shadow version to compare answers without serving them.")
    cells = [(f'data-primary="{attr(pick(r, "primary", "version") or "")}"'
              f' data-shadow="{attr(pick(r, "shadow", "shadow_version") or "")}"',
              (escape(str(pick(r, "primary", "version"))), escape(str(pick(r, "shadow", "shadow_version"))),
               str(int(_num(pick(r, "requests", "count")))), f'{_num(pick(r, "top_k_overlap", "mean_agreement")):.2f}',
               _observed(r.get("rank_correlation"))))
             for r in rows]
    return stacked_table("shadow", SHADOW_COLUMNS, cells)


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


def decision_html(decision: Mapping[str, Any], window: Mapping[str, Any] | None = None) -> str:
    verdict = str(decision.get("verdict") or "inconclusive")
    over = (f'<div class="rr-note" data-testid="decision-window">Both versions over the same window:'
            f" {escape(window_words(window))}.</div>") if window and isinstance(window.get("start"), (int, float)) else ""
    rows = []
    for row in decision.get("rows") or ():
        passed, mark = _verdict_cell(row.get("passed"))
        rows.append((
            f'data-criterion="{attr(row.get("criterion", ""))}" data-passed="{passed}"',
            [escape(str(row.get("criterion"))), _percent(str(row.get("criterion")), row.get("observed")),
             escape(str(row.get("threshold", ""))), mark, escape(str(row.get("detail") or ""))],
        ))
    table = stacked_table("decision-table", ("criterion", "observed", "threshold", "passed", "detail"), rows)
    return (
        f'<div class="rr-decision" data-testid="decision" data-verdict="{attr(verdict)}"'
        f' data-candidate="{attr(decision.get("candidate") or "")}">'
        f'<div class="rr-verdict rr-verdict-{attr(verdict.replace(" ", "-"))}">Verdict: <b>{escape(verdict)}</b>'
        f' (candidate {escape(str(decision.get("candidate") or "—"))} vs stable {escape(str(decision.get("stable") or "—"))})</div>{over}'
        f"{table}</div>"
    )
