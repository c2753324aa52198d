"""Operator tab: hot update, rollout commands, gates, events and loaded versions; every action
checks the admin token first."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from reranker.errors import InputError
from reranker.service import RerankService
from ui.guard import ACTOR, guarded
from ui.render import note_html
from ui.render_status import events_html, gates_html, operator_panel_html, versions_html
from ui.style import html_view

REFRESH_SECONDS = 2.0
TAB_LABEL = "Operator"
COMMANDS = (("pause", "Pause"), ("resume", "Resume"), ("promote", "Promote now"), ("rollback", "Roll back now"),
            ("acknowledge", "Acknowledge"), ("cancel", "Cancel"))
PLANS = ("default", "demo", "custom")
MODES = ("auto", "same-model", "new-model")


def chosen_plan(plan: str, custom: str) -> str:
    if plan != "custom":
        return plan
    if not custom.strip():
        raise InputError("plan is 'custom' but the stages JSON is empty")
    return custom


def build_operator_tab(service: RerankService) -> gr.Timer:
    """Returns the refresh timer; the app activates it only while this tab is shown."""
    def hot_update(token: str, path: str, plan: str, custom: str, mode: str, force: bool) -> str:
        def submit() -> str:
            chosen_mode = None if mode == "auto" else mode
            rollout = service.submit_update(path or "", chosen_plan(plan, custom), chosen_mode, ACTOR, force_replace=force)
            return f"started rollout {rollout} of {path}"
        return guarded(service, token, "Hot update", submit)

    def command(name: str) -> Callable[[str], str]:
        return lambda token: guarded(service, token, name, lambda: service.rollout_command(name, ACTOR))

    def load(token: str, path: str) -> str:
        return guarded(service, token, "Load", lambda: "loading " + service.load_version(path or "", ACTOR))

    def unload(token: str, version: str | None) -> str:
        return guarded(service, token, "Unload", lambda: service.unload_version(version or "", ACTOR))

    def refresh(token: str) -> tuple[str, str, str, str]:
        status = service.status()
        panel = operator_panel_html(status)
        if not service.check_admin(token or ""):
            hidden = note_html("Enter the admin token to see gates, events and versions.")
            return panel, hidden, hidden, hidden
        return panel, gates_html(status.get("gates") or []), events_html(status.get("events") or []), \
            versions_html(service.versions())

    def pickers() -> tuple[Any, Any]:
        ids = [v["id"] for v in service.versions()]
        return gr.Dropdown(choices=service.known_model_dirs()), gr.Dropdown(choices=ids)

    with gr.Tab(TAB_LABEL, id="operator") as tab:
        timer = gr.Timer(REFRESH_SECONDS, active=False)  # inside the tab: a Tabs child becomes a tab
        token = gr.Textbox(label="Admin token", type="password", elem_id="op-token")
        with gr.Row():
            path = gr.Dropdown(label="Model path", choices=[], allow_custom_value=True, elem_id="op-path", scale=2)
            plan = gr.Radio(list(PLANS), value="default", label="Plan", elem_id="op-plan")
            mode = gr.Radio(list(MODES), value="auto", label="Mode", elem_id="op-mode")
        custom = gr.Textbox(label="Custom plan (JSON list of stages)", lines=3, visible=False, elem_id="op-custom",
                            placeholder='[{"share": 10, "seconds": 20}, {"share": 50, "seconds": 60, "ramp": true}, {"share": 100}]')
        with gr.Row():
            force = gr.Checkbox(label="If both cannot fit in memory, replace in place (requests queue while it loads)",
                                value=False, elem_id="op-force")
            update = gr.Button("Hot update", variant="primary", elem_id="op-update")
        message = html_view(elem_id="op-message")
        panel = html_view(elem_id="op-panel")
        with gr.Row():
            buttons = [(name, gr.Button(label, size="sm", elem_id=f"op-{name}")) for name, label in COMMANDS]
        with gr.Accordion("Gates", open=True):
            gates = html_view(elem_id="op-gates")
        with gr.Accordion("Event log", open=True):
            events = html_view(elem_id="op-events")
        with gr.Accordion("Loaded versions", open=True):
            versions = html_view(elem_id="op-versions")
            with gr.Row():
                load_button = gr.Button("Load model path beside (no traffic)", size="sm", elem_id="op-load")
                unload_pick = gr.Dropdown(label="Version", choices=[], elem_id="op-unload-pick")
                unload_button = gr.Button("Unload", size="sm", elem_id="op-unload")

    views = [panel, gates, events, versions]
    plan.change(lambda p: gr.Textbox(visible=p == "custom"), [plan], [custom])
    update.click(hot_update, [token, path, plan, custom, mode, force], [message]).then(refresh, [token], views)
    for name, button in buttons:
        button.click(command(name), [token], [message]).then(refresh, [token], views)
    load_button.click(load, [token, path], [message]).then(pickers, None, [path, unload_pick])
    unload_button.click(unload, [token, unload_pick], [message]).then(pickers, None, [path, unload_pick])
    gr.on([tab.select, token.submit], pickers, None, [path, unload_pick])
    gr.on(None, pickers, None, [path, unload_pick])
    gr.on([timer.tick, tab.select], refresh, [token], views, show_progress="hidden")
    return timer
