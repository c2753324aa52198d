"""Experiments tab: traffic policy editor, live per-version plots, shadow agreement, the decision."""
from __future__ import annotations

import time
from typing import Any, Mapping

import gradio as gr

from reranker.errors import InputError
from reranker.service import RerankService
from ui.charts import bar_chart, decision_html, histogram, latency_chart, observed_share, shadow_table, stats_table
from ui.guard import ACTOR, guarded, is_operator, signed_out_html
from ui.policy_form import NO_SHADOW, even_split, form_from_policy, format_weights, policy_from_form
from ui.sessions import OperatorSessions
from ui.render import note_html, skeleton_html
from ui.style import html_view

REFRESH_SECONDS = 3.0
TAB_LABEL = "Experiments"


def window_note(report: Mapping[str, Any]) -> str:
    """Which period every figure covers (the same for every version)."""
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
    """latency, share and error-rate plots; scores, per-version table, shadow table, decision."""
    rows = report.get("versions") or []
    share = {str(r.get("version")): observed_share(r) for r in rows}
    errors = {str(r.get("version")): float(r.get("error_rate") or 0) * 100 for r in rows}
    return (
        latency_chart(report.get("series") or []),
        bar_chart(share, "share-chart", "Traffic share (% of requests in the window)", "%", 100.0),
        bar_chart(errors, "error-chart", "Error rate (% of requests in the window)", "%", max([5.0, *errors.values()])),
        histogram(report.get("scores") or {}),
        window_note(report) + latency_note(report) + stats_table(rows),
        shadow_table(report.get("shadow_live") or report.get("shadow") or []),
        decision_html(report.get("decision") or {}),
    )


def signed_out_views() -> tuple[Any, ...]:
    return (signed_out_html(), "", "", "", "", "", "")


def build_experiments_tab(service: RerankService, sessions: OperatorSessions) -> gr.Timer:
    """Returns the refresh timer; the app activates it only while this tab is shown. Everything here
    is operator data (REST serves it under /admin): a session that has not signed in sees a hint."""
    def load_form(request: gr.Request) -> tuple[Any, ...]:
        if not is_operator(sessions, request):
            return "", True, "[]", gr.Dropdown(choices=[NO_SHADOW], value=NO_SHADOW)
        weights, sticky, rules, shadow = form_from_policy(service.traffic() if service.is_ready() else {})
        choices = [NO_SHADOW, *service.usable_versions()]
        return weights, sticky, rules, gr.Dropdown(choices=choices, value=shadow)

    def apply(weights: str, sticky: bool, rules: str, shadow: str, request: gr.Request) -> str:
        return guarded(sessions, request, "Traffic policy", lambda: "applied " + format_weights(
            service.set_traffic(policy_from_form(weights, sticky, rules, shadow), ACTOR).get("weights") or {}))

    def start_winner(request: gr.Request) -> str:
        def start() -> str:
            decision = service.experiment_report().get("decision") or {}
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
        return report_views(service.experiment_report(window_s=float(window)))

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
        with gr.Row():
            latency = html_view(elem_id="ex-latency")
            share = html_view(elem_id="ex-share")
        with gr.Row():
            errors = html_view(elem_id="ex-errors")
            scores = html_view(elem_id="ex-scores")
        stats = html_view(skeleton_html("Loading the experiment report…"), elem_id="ex-stats")
        shadow_view = html_view(elem_id="ex-shadow-view")
        decision = html_view(elem_id="ex-decision")
        winner = gr.Button("Start staged rollout of the winner", variant="primary", elem_id="ex-start")

    views = [latency, share, errors, scores, stats, shadow_view, decision]
    gr.on([tab.select, reload.click], load_form, None, [weights, sticky, rules, shadow])
    split.click(split_evenly, None, [weights])
    apply_button.click(apply, [weights, sticky, rules, shadow], [message]).then(refresh, [window], views)
    winner.click(start_winner, None, [message])
    gr.on([tab.select, window.change], refresh, [window], views)
    timer.tick(refresh, [window], views, show_progress="hidden")
    return timer
