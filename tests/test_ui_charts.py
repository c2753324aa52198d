"""Issue 11, item 5: the Experiments plots have a time axis with round ticks ("−5 min" … "now"),
y ticks with units, a legend per version, a tooltip per point, and the theme's colours."""
from __future__ import annotations

import re

import pytest

from ui.charts import (
    ago, decision_html, error_chart, histogram, latency_chart, nice_step, rate_chart, share_chart, time_ticks, value_ticks,
    window_words, with_unit,
)

END = 1_700_000_600.0
WINDOW = {"start": END - 150, "end": END, "seconds": 150, "since_policy_change": True}
SERIES = [{"bucket_start": END - 150 + i * 10, "version": v, "count": n, "errors": e, "p50_ms": 40.0 + i,
           "p95_ms": 90.0 + 2 * i} for i in range(15) for v, n, e in (("mini-v1", 11, 0), ("mini-v2", 9, 1))]
ROWS = [{"version": "mini-v1", "requests": 165, "errors": 0, "error_rate": 0.0, "observed_share": 0.55,
         "configured_share": 50.0},
        {"version": "mini-v2", "requests": 135, "errors": 15, "error_rate": 0.111, "observed_share": 0.45,
         "configured_share": 50.0}]


def ticks(html: str, axis: str) -> list[str]:
    return re.findall(rf'class="rr-tick rr-{axis}tick"[^>]*>([^<]*)<', html)


@pytest.mark.parametrize(("span", "count", "step"), [(1.0, 4, 0.25), (143.0, 4, 50.0), (7.0, 4, 2.0), (0.09, 4, 0.025)])
def test_nice_steps(span: float, count: int, step: float) -> None:
    assert nice_step(span, count) == pytest.approx(step)


def test_value_ticks_reach_the_maximum_and_carry_units() -> None:
    assert value_ticks(143.0) == [0.0, 50.0, 100.0, 150.0]
    assert value_ticks(0.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert with_unit(150, "ms") == "150 ms" and with_unit(50, "%") == "50%" and with_unit(2.5, "req/s", 2.5) == "2.5 req/s"


def test_time_ticks_are_round_offsets_before_now() -> None:
    assert time_ticks(150) == [-150, -120, -90, -60, -30, 0]
    assert [ago(t, 120) for t in time_ticks(600)] == ["−10 min", "−8 min", "−6 min", "−4 min", "−2 min", "now"]
    assert ago(-3600, 3600) == "−1 h" and ago(-45, 15) == "−45 s" and ago(-120, 30) == "−120 s"
    assert window_words(WINDOW) == "the last 150 s (since the traffic policy changed at 22:20:50 UTC)"


def test_latency_chart_has_axes_legend_and_tooltips() -> None:
    html = latency_chart(SERIES, WINDOW, 10.0)
    assert ticks(html, "x") == ["−150 s", "−120 s", "−90 s", "−60 s", "−30 s", "now"]
    assert ticks(html, "y") == ["0 ms", "50 ms", "100 ms", "150 ms"]
    assert re.findall(r'class="rr-key rr-c\d" data-version="([^"]+)"', html) == ["mini-v1", "mini-v2"]
    assert html.count("<title>") == 4 * 15 and "P95 90 ms" in html and "22:20:50–22:21:00 UTC" in html
    assert 'data-series="p95_ms" data-points="15"' in html and "rr-dashed" in html
    assert "#" not in html.replace("&#", "")  # no fixed colours: theme classes only


def test_share_chart_plots_each_buckets_split_beside_the_policy() -> None:
    html = share_chart(SERIES, ROWS, WINDOW, 10.0)
    assert ticks(html, "y") == ["0%", "25%", "50%", "75%", "100%"]
    assert "55% (11 of 20 requests)" in html and "the policy gives it 50%" in html
    assert "55% of the window (policy 50%)" in html and "45% of the window (policy 50%)" in html


def test_rate_error_and_score_charts() -> None:
    rate = rate_chart(SERIES, WINDOW, 10.0)
    assert ticks(rate, "y")[-1].endswith("req/s") and "1.1 req/s (11 requests)" in rate
    errors = error_chart(SERIES, ROWS, WINDOW, 10.0)
    assert ticks(errors, "y")[-1] == "15%" and "11.1% errors (1 of 9 requests)" in errors
    assert "11.1% over the window (15 of 135)" in errors
    scores = histogram({"mini-v1": [0.1, 0.15, 0.9], "mini-v2": [0.5]})
    assert ticks(scores, "x") == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] and ticks(scores, "y")[-1] == "100%"
    assert "67% (2 of 3)" in scores and "median 0.15" in scores


def test_empty_charts_keep_their_frame_and_say_why() -> None:
    for html, testid in ((latency_chart([]), "latency-chart"), (share_chart([]), "share-chart"),
                         (rate_chart([]), "rate-chart"), (error_chart([]), "error-chart"), (histogram({}), "score-chart")):
        assert f'data-testid="{testid}"' in html and "rr-chart-empty" in html and "no " in html.lower()


def test_the_decision_names_the_window_both_arms_share() -> None:
    html = decision_html({"verdict": "promote", "candidate": "mini-v2", "stable": "mini-v1", "rows": []}, WINDOW)
    assert 'data-testid="decision-window"' in html and "the last 150 s (since the traffic policy changed" in html
    assert "decision-window" not in decision_html({"verdict": "inconclusive"})


def test_experiment_tables_label_every_cell_for_the_phone_layout() -> None:
    from ui.charts import stats_table
    html = stats_table(ROWS)
    assert 'class="rr-table rr-stack"' in html and 'data-label="observed share">55%</td>' in html
    assert 'data-label="error rate">11.1%</td>' in html and 'data-version="mini-v2" data-count="135"' in html
