"""Experiments tab: traffic policy editor, live per-version plots, shadow agreement, the decision."""
from __future__ import annotations

import time
from typing import Any, Mapping

import gradio as gr

from reranker.errors import InputError
from reranker.service import RerankService
from ui.charts import (
    decision_html, error_chart, histogram, latency_chart, rate_chart, share_chart, shadow_table, stats_table,
    window_words,
)
from ui.guard import ACTOR, guarded, is_operator, signed_out_html
from ui.policy_form import NO_SHADOW, even_split, form_from_policy, format_weights, policy_from_form
from ui.sessions import OperatorSessions
from ui.render import note_html, skeleton_html
from ui.style import html_view

REFRESH_SECONDS = 3.0
TAB_LABEL = "Experiments"


def window_note(report: Mapping[str, Any]) -> str:
    """Which period every figure covers (the same for every version)."""
    window = report.get("window")
    if isinstance(window, Mapping) and isinstance(window.get("start"), (int, float)):
        return note_html(f"Every figure below covers the same window for every version: {window_words(window)}.")
    start = report.get("window_start")
    if not isinstance(start, (int, float)):
        return ""
    since = time.strftime("%H:%M:%S", time.gmtime(start))
    why = " (when the traffic policy last changed)" if report.get("since_policy_change") else ""
    return note_html(f"Every figure covers the same period for every version: since {since} UTC{why}.")


def latency_note(report: Mapping[str, Any]) -> str:
    """Which latency every figure and the decision's latency row show."""
    definition = report.get("latency_definition")
    return note_html(f"Latency shown: {definition}.") if isinstance(definition, str) and definition else ""


def report_views(report: Mapping[str, Any]) -> tuple[Any, ...]:
    """latency, traffic share, throughput and error-rate plots over the report's window; scores,
    per-version table, shadow table, decision."""
    rows = report.get("versions") or []
    series = report.get("series") or []
    window, bucket = report.get("window"), report.get("bucket_s")
    return (
        latency_chart(series, window, bucket),
        share_chart(series, rows, window, bucket),
        error_chart(series, rows, window, bucket),
        histogram(report.get("scores") or {}),
        window_note(report) + latency_note(report) + stats_table(rows),
        shadow_table(report.get("shadow_live") or report.get("shadow") or []),
        decision_html(report.get("decision") or {}, window if report.get("decision") else None),
        rate_chart(series, window, bucket),
    )


def signed_out_views() -> tuple[Any, ...]:
    return (signed_out_html(), "", "", "", "", "", "", "")


def build_experiments_tab(service: RerankService, sessions: OperatorSessions) -> gr.Timer:
    """Returns the refresh timer; the app activates it only while this tab is shown. Everything here
    is operator data (REST serves it under /admin): a session that has not signed in sees a hint."""
    def load_form(request: gr.Request) -> tuple[Any, ...]:
        if not is_operator(sessions, request):
            return "", True, "[]", gr.Dropdown(choices=[NO_SHADOW], value=NO_SHADOW)
        weights, sticky, rules, shadow = form_from_policy(service.traffic() if service.is_ready() else None)
        choices = [NO_SHADOW, *service.usable_versions()]
        return weights, sticky, rules, gr.Dropdown(choices=choices, value=shadow)

    def apply(weights: str, sticky: bool, rules: str, shadow: str, request: gr.Request) -> str:
        return guarded(sessions, request, "Traffic policy", lambda: "applied " + format_weights(
            service.set_traffic(policy_from_form(weights, sticky, rules, shadow), ACTOR).weights))

    def start_winner(request: gr.Request) -> str:
        def start() -> str:
            decision = service.experiment_report().model_dump().get("decision") or {}  # charts read mappings
            candidate, verdict = decision.get("candidate"), decision.get("verdict")
            if not candidate or verdict != "promote":
                raise InputError(f"no winner to roll out: the verdict is {verdict or 'not available'!r}"
                                 f" for candidate {candidate or '(none)'!r}")
            return f"started rollout {service.start_rollout_of(candidate, ACTOR)} of {candidate}"
        return guarded(sessions, request, "Staged rollout", start)

    def split_evenly(request: gr.Request) -> Any:
        if not is_operator(sessions, request):
            return gr.skip()
        try:
            return format_weights(even_split(service.usable_versions()))
        except InputError as exc:
            gr.Warning(str(exc))
            return gr.skip()

    def refresh(window: float, request: gr.Request) -> tuple[str, ...]:
        if not is_operator(sessions, request):
            return signed_out_views()
        return report_views(service.experiment_report(window_s=float(window)).model_dump())

    with gr.Tab(TAB_LABEL, id="experiments") as tab:
        timer = gr.Timer(REFRESH_SECONDS, active=False)  # inside the tab: a Tabs child becomes a tab
        with gr.Row():
            weights = gr.Textbox(label="Weights (version: percent, …)", elem_id="ex-weights", scale=2)
            sticky = gr.Checkbox(label="Sticky users", value=True, elem_id="ex-sticky")
            shadow = gr.Dropdown(label="Shadow version", choices=[NO_SHADOW], value=NO_SHADOW, elem_id="ex-shadow")
        rules = gr.Textbox(label='Rules (JSON list, e.g. [{"region": "eu", "version": "mini-v2"}])', value="[]",
                           elem_id="ex-rules")
        with gr.Row():
            split = gr.Button("Even split across ready versions", size="sm", elem_id="ex-split")
            reload = gr.Button("Reload current policy", size="sm", elem_id="ex-reload")
            apply_button = gr.Button("Apply policy", variant="primary", elem_id="ex-apply")
        message = html_view(elem_id="ex-message")
        window = gr.Slider(60, 3600, value=600, step=60, label="Window (seconds): the last N seconds, for every figure"
                           " below", elem_id="ex-window")
        with gr.Row(elem_classes="rr-charts"):  # two per row on a wide screen, one per row on a phone
            latency = html_view(skeleton_html("Loading the latency plot…"), elem_id="ex-latency")
            share = html_view(skeleton_html("Loading the traffic plot…"), elem_id="ex-share")
        with gr.Row(elem_classes="rr-charts"):
            rate = html_view(skeleton_html("Loading the throughput plot…"), elem_id="ex-rate")
            errors = html_view(skeleton_html("Loading the error plot…"), elem_id="ex-errors")
        scores = html_view(skeleton_html("Loading the score distribution…"), elem_id="ex-scores")
        stats = html_view(skeleton_html("Loading the experiment report…"), elem_id="ex-stats")
        shadow_view = html_view(elem_id="ex-shadow-view")
        decision = html_view(elem_id="ex-decision")
        winner = gr.Button("Start staged rollout of the winner", variant="primary", elem_id="ex-start")

    views = [latency, share, errors, scores, stats, shadow_view, decision, rate]
    gr.on([tab.select, reload.click], load_form, None, [weights, sticky, rules, shadow])
    split.click(split_evenly, None, [weights])
    apply_button.click(apply, [weights, sticky, rules, shadow], [message]).then(refresh, [window], views)
    winner.click(start_winner, None, [message])
    gr.on([tab.select, window.change], refresh, [window], views)
    timer.tick(refresh, [window], views, show_progress="hidden")
    return timer
