"""Unit tests of the console's pure helpers: HTML rendering, charts, form parsing, entries, thumbnails."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from reranker.errors import InputError  # noqa: E402
from reranker.service.views import EventView, GateView, ProgressView, StatusView, StepView, TrafficView, VersionView  # noqa: E402
from reranker.service.types import CompareResult, RankChange, RankedDocument, RankResult  # noqa: E402
from ui.charts import (  # noqa: E402
    decision_html, histogram, latency_chart, observed_share, shadow_table, share_chart, stats_table,
)
from ui.entries import Entry, add_bulk, add_one, kind_of, parse_top_n, rank_request  # noqa: E402
from ui.examples import load_examples  # noqa: E402
from ui.media import preview  # noqa: E402
from ui.policy_form import even_split, form_from_policy, parse_weights, policy_from_form  # noqa: E402
from ui.render import Preview, compare_html, documents_html, error_html, results_html  # noqa: E402
from ui.render_status import banner_html, events_html, gates_html, light_html, stage_html, versions_html  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
CAT = str(EXAMPLES / "images" / "chelsea.jpg")
CAT_VIDEO = str(EXAMPLES / "videos" / "cat_pan.mp4")


def _result(version: str, ranked: list[tuple[int, float]], ms: float = 12.0) -> RankResult:
    return RankResult("rid", version, tuple(RankedDocument(i, s) for i, s in ranked), ms, 3)


def _attrs(html: str, tag: str, name: str) -> list[str]:
    return re.findall(rf'<{tag}[^>]*\s{name}="([^"]*)"', html)


def test_results_carry_rank_index_score_and_version() -> None:
    html = results_html(_result("mini-v2", [(2, 0.91), (0, 0.5), (1, 0.1)]), [Preview("a"), Preview("b"), Preview("c")])
    assert 'data-testid="results" data-version="mini-v2"' in html
    assert _attrs(html, "li", "data-rank") == ["1", "2", "3"]
    assert _attrs(html, "li", "data-index") == ["2", "0", "1"]
    assert _attrs(html, "li", "data-score")[0] == "0.910000"
    assert "#2 c" in html and "12 ms" in html


def test_results_escape_user_text_and_clamp_bars() -> None:
    html = results_html(_result("v", [(0, 1.7)]), [Preview("<script>alert(1)</script>")])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "width:100.0%" in html


def test_documents_listing_counts_and_kinds() -> None:
    html = documents_html([Preview("x"), Preview("[image a.jpg]", "data:image/jpeg;base64,AA", "image")])
    assert 'data-count="2"' in html and _attrs(html, "li", "data-kind") == ["text", "image"]
    assert "No documents" in documents_html([])


def test_compare_marks_every_change_and_shows_both_versions() -> None:
    result = CompareResult(
        a=_result("mini-v1", [(0, 0.9), (1, 0.8)]), b=_result("mini-v2", [(1, 0.95), (2, 0.7)], ms=30),
        changes=(RankChange(1, 2, 1, "up"), RankChange(2, None, 2, "new"), RankChange(0, 1, None, "dropped")),
    )
    html = compare_html(result, [Preview("zero"), Preview("one"), Preview("two")])
    assert _attrs(html, "tr", "data-mark") == ["up", "new", "dropped"]
    assert 'data-version-a="mini-v1"' in html and 'data-version-b="mini-v2"' in html
    assert "0.9500" in html and "—" in html and "30 ms" in html


def test_error_box_escapes() -> None:
    assert 'data-testid="error"' in error_html("bad <x>") and "&lt;x&gt;" in error_html("bad <x>")


@pytest.mark.parametrize("light", ["green", "yellow", "red"])
def test_light_renders_its_colour(light: str) -> None:
    assert f'data-light="{light}"' in light_html(light) and f"rr-light-{light}" in light_html(light)


def test_banner_active_only_with_text_and_shows_progress() -> None:
    idle = banner_html(StatusView(light="green", state="idle", banner="", stable="mini-v1"))
    assert 'data-active="false"' in idle and "Serving mini-v1" in idle and 'data-state="idle"' in idle
    rolling = banner_html(StatusView(light="yellow", state="rolling_out", banner="Model upgrade 2/3",
                                     stage=ProgressView(stage=2, stages=3, share=20, seconds_in_stage=1,
                                                        stage_seconds=10, fraction=0.5)))
    assert 'data-active="true"' in rolling and "Model upgrade 2/3" in rolling and "width:50.0%" in rolling
    assert 'data-light="red"' in banner_html(StatusView(light="red", state="starting", banner=""))


def test_stage_reports_share_and_time() -> None:
    html = stage_html(ProgressView(stage=2, stages=3, share=27.5, seconds_in_stage=8, stage_seconds=20, fraction=0.45))
    assert 'data-stage="2"' in html and 'data-share="27.5"' in html and "8 s of at least 20 s" in html
    assert 'data-stage="0"' in stage_html(None)


def test_gates_outcomes() -> None:
    html = gates_html([GateView(name="golden", observed=0.0004, threshold=0.001, passed=True),
                       GateView(name="latency", passed=False), GateView(name="memory", pending=True)])
    assert _attrs(html, "tr", "data-outcome") == ["passed", "failed", "pending"]
    assert "No gate" in gates_html([])


def test_events_and_versions_tables() -> None:
    events = events_html([EventView(at=0, kind="rolled_back", message="p95 <too> high", level="alert", actor="x")])
    assert 'data-kind="rolled_back"' in events and "&lt;too&gt;" in events
    table = versions_html([VersionView(id="mini-v1", state="serving", stable=True, share=100, bytes_in_memory=50_000_000)])
    assert 'data-version="mini-v1"' in table and 'data-stable="true"' in table and "50 MB" in table


def test_charts_mark_each_version_with_a_time_axis() -> None:
    series = [{"bucket_start": t, "version": v, "p50_ms": 10 + t, "p95_ms": 20 + t} for t in (0, 1, 2) for v in ("a", "b")]
    series.append({"bucket_start": 3, "version": "c", "p50_ms": None, "p95_ms": None})  # only errors in that bucket
    latency = latency_chart(series)
    assert _attrs(latency, "g", "data-version") == ["a", "a", "b", "b"] and 'data-points="3"' in latency
    assert "now" in latency and "00:00:00" in latency and "UTC" in latency  # time ticks; clock time in tooltips
    assert "1200 ms" in latency_chart([{"bucket_start": 0, "version": "a", "p50_ms": 900.0, "p95_ms": 1200.0}])
    bars = share_chart([{"bucket_start": 0, "version": v, "count": 5} for v in ("a", "b")])
    assert 'data-testid="share-chart"' in bars and _attrs(bars, "g", "data-version") == ["a", "b"]
    hist = histogram({"a": [0.1, 0.95, 1.0], "b": [], "c": [0.5]})
    assert _attrs(hist, "g", "data-version") == ["a", "c"] and 'data-count="3"' in hist
    assert "no" in latency_chart([]).lower() and "no" in histogram({}).lower()


def test_tables_and_decision_tolerate_missing_values() -> None:
    stats = stats_table([{"version": "a", "requests": 4, "error_rate": 0.25, "p50_ms": None, "observed_share": 0.5,
                          "configured_share": 40.0}])
    assert 'data-count="4"' in stats and "25.0%" in stats and "40%" in stats and "50%" in stats and "—" in stats
    assert observed_share({"observed_share": 0.25}) == 25.0
    assert 'data-shadow="b"' in shadow_table([{"primary": "a", "shadow": "b", "top_k_overlap": 0.8}])
    stored = shadow_table([{"version": "a", "shadow_version": "b", "count": 7, "mean_agreement": 0.6}])
    assert 'data-primary="a"' in stored and "0.60" in stored and 'data-label="requests">7</td>' in stored
    html = decision_html({"verdict": "keep stable", "candidate": "b", "stable": "a",
                          "rows": [{"criterion": "latency", "observed": None, "passed": None},
                                   {"criterion": "errors", "observed": 0.5, "passed": False}]})
    assert 'data-verdict="keep stable"' in html and _attrs(html, "tr", "data-passed") == ["unknown", "false"]
    assert 'data-verdict="inconclusive"' in decision_html({})


def test_weights_round_trip_and_errors() -> None:
    assert parse_weights("mini-v1: 50, mini-v2=50") == {"mini-v1": 50.0, "mini-v2": 50.0}
    assert parse_weights("a: 70\nb: 30") == {"a": 70.0, "b": 30.0}
    for bad in ("", "mini-v1", "a: lots"):
        with pytest.raises(InputError):
            parse_weights(bad)
    assert even_split(["a", "b", "c"]) == {"a": 34.0, "b": 33.0, "c": 33.0}
    policy = policy_from_form("a: 60, b: 40", True, '[{"region": "eu", "version": "b"}]', "b")
    assert policy == {"weights": {"a": 60.0, "b": 40.0}, "sticky": True,
                      "rules": [{"region": "eu", "version": "b"}], "shadow": {"version": "b"}}
    in_force = TrafficView.model_validate({"primary": "a", "generation": 3, **policy})
    assert form_from_policy(in_force) == ("a: 60, b: 40", True, '[{"region": "eu", "version": "b"}]', "b")
    assert form_from_policy(None) == ("", True, "[]", "none")
    assert policy_from_form("a: 100", False, "", "none")["shadow"] is None
    with pytest.raises(InputError):
        policy_from_form("a: 100", False, "{", "none")


def test_entries_bulk_kinds_and_errors(tmp_path: Path) -> None:
    docs = add_bulk((), "one\n\n two \n", [CAT, CAT_VIDEO])
    assert docs == (Entry(text="one"), Entry(text="two"), Entry(image=CAT), Entry(video=CAT_VIDEO))
    assert kind_of("X.JPEG") == "image" and kind_of("clip.webm") == "video"
    with pytest.raises(InputError, match="notes.txt"):
        add_bulk((), "", [str(tmp_path / "notes.txt")])
    with pytest.raises(InputError):
        add_one(docs, "  ", None, None)
    assert add_one((), "t", CAT, None)[0].kind == "mixed"


def test_rank_request_reads_bytes_and_checks_input() -> None:
    request = rank_request(Entry(text="a cat"), (Entry(image=CAT), Entry(text="dog")), " ", 0, "session-1")
    assert request.documents[0].images[0] == Path(CAT).read_bytes()
    assert request.top_n is None and request.instruction is None and request.caller.user_key == "session-1"
    assert parse_top_n(3.0) == 3
    with pytest.raises(InputError, match="query"):
        rank_request(Entry(), (Entry(text="x"),), None, None, None)
    with pytest.raises(InputError, match="documents"):
        rank_request(Entry(text="x"), (), None, None, None)
    with pytest.raises(InputError, match="top-n"):
        parse_top_n(-2)
    with pytest.raises(InputError, match="could not be read"):
        rank_request(Entry(text="x"), (Entry(image=str(Path(CAT).parent / "missing.jpg")),), None, None, None)
    with pytest.raises(InputError, match="not a file uploaded"):
        rank_request(Entry(text="x"), (Entry(image="/nonexistent/a.jpg"),), None, None, None)


def test_previews_make_thumbnails_of_images_and_video_frames(tmp_path: Path) -> None:
    image, video = preview(Entry(image=CAT)), preview(Entry(text="clip", video=CAT_VIDEO))
    assert image.thumb and image.thumb.startswith("data:image/jpeg;base64,") and image.kind == "image"
    assert video.thumb and video.label == "clip [video cat_pan.mp4]" and video.kind == "mixed"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert preview(Entry(image=str(broken))).thumb is None
    assert preview(Entry(text="x" * 200)).label.endswith("…")


def test_examples_load_with_media_paths(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat.jpg").write_bytes(Path(CAT).read_bytes())
    data = [{"name": "cats", "query": "a cat", "documents": ["a dog", {"image": "images/cat.jpg"}]},
            {"query": "", "documents": ["skipped: blank query"]}]
    (tmp_path / "demo_examples.json").write_text(json.dumps(data))
    (tmp_path / "demos_broken.json").write_text("{not json")
    examples = load_examples(tmp_path)
    assert [e.name for e in examples] == ["cats"]
    assert examples[0].documents[1].image == str((tmp_path / "images" / "cat.jpg").resolve())


def test_tab_helpers_pick_versions_plans_and_views() -> None:
    from ui.compare import default_pair
    from ui.experiments import report_views
    from ui.operator import chosen_plan

    assert default_pair(["mini-v1", "mini-v2"], "mini-v2") == ("mini-v2", "mini-v1")
    assert default_pair(["mini-v1"], None) == ("mini-v1", None)
    assert chosen_plan("demo", "ignored") == "demo" and chosen_plan("custom", "[1]") == "[1]"
    with pytest.raises(InputError, match="custom"):
        chosen_plan("custom", " ")
    views = report_views({"versions": [{"version": "a", "requests": 3, "observed_share": 1.0, "error_rate": 0.0}],
                          "series": [{"bucket_start": 0, "version": "a", "count": 3, "errors": 0, "p50_ms": 5.0,
                                      "p95_ms": 9.0}],
                          "scores": {"a": [0.2]}, "decision": None})
    assert len(views) == 8 and all('data-version="a"' in v for v in views[:5])
    assert 'data-verdict="inconclusive"' in views[6]


def test_gates_carry_units_and_resolve_when_the_update_ended() -> None:
    gates = [GateView(name="latency_p95", observed=0.1234, threshold=0.2069, passed=True),
             GateView(name="error_rate", observed=0.0, threshold=0.02, passed=True),
             GateView(name="memory_growth", observed=None, threshold=0.05, pending=True)]
    live = gates_html(gates, "rolling_out")
    assert "123.4 ms" in live and "≤ 206.9 ms" in live and "≤ 2.0 %" in live and "0.2069" not in live
    assert _attrs(live, "tr", "data-outcome") == ["passed", "passed", "pending"]
    ended = gates_html(gates, "promoted")
    assert _attrs(ended, "tr", "data-outcome")[-1] == "undecided" and "waiting" not in ended


def test_operator_panel_drops_the_candidate_after_the_update_and_lists_steps() -> None:
    from ui.render_status import operator_panel_html

    def steps(*states: str) -> list[StepView]:
        return [StepView(stage=1, share=5, seconds=10, state=states[0]),
                StepView(stage=2, share=50, seconds=20, ramp=True, state=states[1]),
                StepView(stage=3, share=100, seconds=0, state=states[2])]
    rolling = operator_panel_html(StatusView(light="yellow", banner="", state="rolling_out", stable="mini-v1",
                                             candidate="mini-v2", steps=steps("done", "current", "pending"),
                                             stage=ProgressView(stage=2, stages=3, share=20, seconds_in_stage=4,
                                                                stage_seconds=20, fraction=0.3)))
    assert 'data-testid="candidate"' in rolling and "rolling out" in rolling
    assert _attrs(rolling, "li", "data-status") == ["done", "current", "pending"]
    done = operator_panel_html(StatusView(light="green", banner="", state="promoted", stable="mini-v2",
                                          candidate="mini-v2", steps=steps("done", "done", "done")))
    assert 'data-testid="candidate"' not in done and "done: the new version serves everything" in done
    assert _attrs(done, "li", "data-status") == ["done", "done", "done"]
    holding = operator_panel_html(StatusView(light="yellow", banner="", state="rolling_out", stable="a", candidate="b",
                                             holding="holding: 29/50 candidate requests",
                                             steps=[StepView(stage=1, share=5, seconds=30, state="holding")]))
    assert "holding: 29/50 candidate requests" in holding


def test_unloaded_versions_are_not_listed() -> None:
    html = versions_html([VersionView(id="mini-v1", state="serving", stable=True, share=100),
                          VersionView(id="mini-v2", state="retired", bytes_in_memory=134_000_000)])
    assert _attrs(html, "tr", "data-version") == ["mini-v1"] and "134 MB" not in html


def test_experiment_figures_name_their_common_period() -> None:
    from ui.experiments import window_note
    note = window_note({"window_start": 0.0, "since_policy_change": True})
    assert "since 00:00:00 UTC" in note and "traffic policy" in note and window_note({}) == ""
