"""Operator tab: sign in, hot update, rollout commands, gates, events and loaded versions. Only a
session signed in with the admin token (ui.sessions) sees operator data or runs an action."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from reranker.errors import InputError
from reranker.service import RerankService
from ui.guard import ACTOR, guarded, is_operator, session_of, signed_out_html
from ui.render import attr
from ui.render_status import events_html, gates_html, operator_panel_html, versions_html
from ui.sessions import OperatorSessions
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


def auth_html(signed_in: bool, refused: bool = False) -> str:
    text = ("Signed in as operator for this page." if signed_in else
            "Wrong admin token." if refused else "Not signed in: enter the admin token to see and change rollouts.")
    return (f'<div class="rr-auth" data-testid="auth" data-signed-in="{str(signed_in).lower()}"'
            f' data-refused="{str(refused).lower()}">{attr(text)}</div>')


def build_operator_tab(service: RerankService, sessions: OperatorSessions) -> gr.Timer:
    """Returns the refresh timer; the app activates it only while this tab is shown."""
    def sign_in(token: str, request: gr.Request) -> tuple[str, str]:
        ok = sessions.sign_in(session_of(request), token)
        if not ok:
            gr.Warning("Wrong admin token")
        return "", auth_html(ok, refused=not ok)

    def sign_out(request: gr.Request) -> str:
        sessions.sign_out(session_of(request))
        return auth_html(False)

    def hot_update(path: str, plan: str, custom: str, mode: str, force: bool, request: gr.Request) -> str:
        def submit() -> str:
            chosen_mode = None if mode == "auto" else mode
            rollout = service.submit_update(path or "", chosen_plan(plan, custom), chosen_mode, ACTOR, force_replace=force)
            return f"started rollout {rollout} of {path}"
        return guarded(sessions, request, "Hot update", submit)

    def command(name: str) -> Callable[[gr.Request], str]:
        def run(request: gr.Request) -> str:
            return guarded(sessions, request, name, lambda: service.rollout_command(name, ACTOR))
        return run

    def load(path: str, request: gr.Request) -> str:
        return guarded(sessions, request, "Load", lambda: "loading " + service.load_version(path or "", ACTOR))

    def unload(version: str | None, request: gr.Request) -> str:
        return guarded(sessions, request, "Unload", lambda: service.unload_version(version or "", ACTOR))

    def refresh(request: gr.Request) -> tuple[str, str, str, str]:
        if not is_operator(sessions, request):
            hidden = signed_out_html()
            return hidden, hidden, hidden, hidden
        status = service.status()
        return operator_panel_html(status), gates_html(status.get("gates") or [], str(status.get("state") or "")), \
            events_html(status.get("events") or []), versions_html(service.versions())

    def pickers(request: gr.Request) -> tuple[Any, Any]:
        if not is_operator(sessions, request):
            return gr.Dropdown(choices=[]), gr.Dropdown(choices=[])
        ids = [v["id"] for v in service.versions()]
        return gr.Dropdown(choices=service.known_model_dirs()), gr.Dropdown(choices=ids)

    with gr.Tab(TAB_LABEL, id="operator") as tab:
        timer = gr.Timer(REFRESH_SECONDS, active=False)  # inside the tab: a Tabs child becomes a tab
        with gr.Row(equal_height=True):
            token = gr.Textbox(label="Admin token", type="password", elem_id="op-token", scale=3)
            sign_in_button = gr.Button("Sign in", size="sm", elem_id="op-sign-in", scale=0)
            sign_out_button = gr.Button("Sign out", size="sm", elem_id="op-sign-out", scale=0)
        auth = html_view(auth_html(False), elem_id="op-auth")
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
    gr.on([token.submit, sign_in_button.click], sign_in, [token], [token, auth]).then(
        refresh, None, views).then(pickers, None, [path, unload_pick])
    sign_out_button.click(sign_out, None, [auth]).then(refresh, None, views).then(pickers, None, [path, unload_pick])
    plan.change(lambda p: gr.Textbox(visible=p == "custom"), [plan], [custom])
    update.click(hot_update, [path, plan, custom, mode, force], [message]).then(refresh, None, views)
    for name, button in buttons:
        button.click(command(name), None, [message]).then(refresh, None, views)
    load_button.click(load, [path], [message]).then(pickers, None, [path, unload_pick])
    unload_button.click(unload, [unload_pick], [message]).then(pickers, None, [path, unload_pick])
    tab.select(pickers, None, [path, unload_pick])
    gr.on([timer.tick, tab.select], refresh, None, views, show_progress="hidden")
    return timer
