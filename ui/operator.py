"""Operator tab: sign in, hot update, rollout commands, gates, events and loaded versions. Only a
session signed in with the admin token (ui.sessions) sees operator data or runs an action;
commands that cannot apply are disabled, and destructive ones ask first, saying what is pending."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from reranker.errors import InputError
from reranker.service import RerankService
from ui.guard import ACTOR, guarded, is_operator, outcome_html, session_of, signed_out_html
from ui.operator_actions import CONFIRM, applies, confirmation, loaded_version_at, not_applicable
from ui.render import attr, skeleton_html
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


def confirm_html(text: str) -> str:
    return f'<div class="rr-outcome rr-confirm" data-testid="confirm">{attr(text)}</div>'


def build_operator_tab(service: RerankService, sessions: OperatorSessions) -> gr.Timer:
    """Returns the refresh timer; the app activates it only while this tab is shown."""
    hidden_row = gr.update(visible=False)

    def sign_in(token: str, request: gr.Request) -> tuple[str, str]:
        ok = sessions.sign_in(session_of(request), token)
        if not ok:
            gr.Warning("Wrong admin token")
        return "", auth_html(ok, refused=not ok)

    def sign_out(request: gr.Request) -> str:
        sessions.sign_out(session_of(request))
        return auth_html(False)

    def hot_update(path: str, plan: str, custom: str, mode: str, force: bool, request: gr.Request) -> tuple[Any, ...]:
        if is_operator(sessions, request):
            loaded = loaded_version_at(path, service.versions(), service.settings.models_dir)
            if loaded and loaded != service.stable_version():
                offer = f"Roll out the loaded {loaded}"
                return (outcome_html("offer", f"{loaded} is already loaded beside the stable version: roll it out"
                                     " instead of loading a second copy."), loaded, gr.update(visible=True),
                        gr.Button(value=offer))

        def submit() -> str:
            chosen_mode = None if mode == "auto" else mode
            rollout = service.submit_update(path or "", chosen_plan(plan, custom), chosen_mode, ACTOR, force_replace=force)
            return f"started rollout {rollout} of {path}"
        return guarded(sessions, request, "Hot update", submit), "", hidden_row, gr.skip()

    def roll_out_loaded(version: str, plan: str, custom: str, request: gr.Request) -> tuple[Any, ...]:
        def start() -> str:
            return f"started rollout {service.start_rollout_of(version, ACTOR, chosen_plan(plan, custom))} of {version}"
        return guarded(sessions, request, "Roll out", start), "", hidden_row

    def command(name: str, label: str) -> Callable[[gr.Request], tuple[Any, ...]]:
        def ask(request: gr.Request) -> tuple[Any, ...]:
            if is_operator(sessions, request):
                status = service.status()
                if not applies(name, status.state):
                    return outcome_html("refused", not_applicable(name, status.state)), "", hidden_row, ""
                if name in CONFIRM:
                    return gr.skip(), name, gr.update(visible=True), confirm_html(confirmation(name, status))
            return guarded(sessions, request, label, lambda: service.rollout_command(name, ACTOR)), "", hidden_row, ""
        return ask

    def confirmed(name: str, request: gr.Request) -> tuple[Any, ...]:
        label = dict(COMMANDS).get(name, name)
        return guarded(sessions, request, label, lambda: service.rollout_command(name, ACTOR)), "", hidden_row

    def load(path: str, request: gr.Request) -> str:
        return guarded(sessions, request, "Load", lambda: "loading " + service.load_version(path or "", ACTOR))

    def unload(version: str | None, request: gr.Request) -> str:
        return guarded(sessions, request, "Unload", lambda: service.unload_version(version or "", ACTOR))

    def refresh(request: gr.Request) -> tuple[Any, ...]:
        if not is_operator(sessions, request):
            hidden = signed_out_html()
            return (hidden, hidden, hidden, hidden, *[gr.Button(interactive=False) for _ in COMMANDS])
        status = service.status()
        return (operator_panel_html(status), gates_html(status.gates, status.state),
                events_html(status.events), versions_html(service.versions()),
                *[gr.Button(interactive=applies(name, status.state)) for name, _ in COMMANDS])

    def pickers(request: gr.Request) -> tuple[Any, Any]:
        if not is_operator(sessions, request):
            return gr.Dropdown(choices=[]), gr.Dropdown(choices=[])
        ids = [v.id for v in service.versions() if v.state in ("ready", "serving")]
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
        offer_version = gr.State("")
        with gr.Row(visible=False, elem_id="op-offer") as offer_row:
            offer_button = gr.Button("Roll out the loaded version", variant="primary", elem_id="op-roll-out-loaded")
        message = html_view(elem_id="op-message")
        panel = html_view(skeleton_html("Loading the rollout status…"), elem_id="op-panel")
        with gr.Row():
            buttons = [(name, label, gr.Button(label, size="sm", elem_id=f"op-{name}", interactive=False))
                       for name, label in COMMANDS]
        pending_command = gr.State("")
        with gr.Row(visible=False, elem_id="op-confirm-row") as confirm_row:
            confirm_text = html_view(elem_id="op-confirm")
            yes = gr.Button("Yes, do it", variant="stop", size="sm", elem_id="op-confirm-yes")
            no = gr.Button("Keep going", size="sm", elem_id="op-confirm-no")
        with gr.Accordion("Checks (gates)", open=True):
            gates = html_view(elem_id="op-gates")
        with gr.Accordion("Event log", open=True):
            events = html_view(elem_id="op-events")
        with gr.Accordion("Loaded versions", open=True):
            versions = html_view(elem_id="op-versions")
            with gr.Row():
                load_button = gr.Button("Load model path beside (no traffic)", size="sm", elem_id="op-load")
                unload_pick = gr.Dropdown(label="Version", choices=[], elem_id="op-unload-pick")
                unload_button = gr.Button("Unload", size="sm", elem_id="op-unload")

    views = [panel, gates, events, versions, *[button for _, _, button in buttons]]
    gr.on([token.submit, sign_in_button.click], sign_in, [token], [token, auth]).then(
        refresh, None, views).then(pickers, None, [path, unload_pick])
    sign_out_button.click(sign_out, None, [auth]).then(refresh, None, views).then(pickers, None, [path, unload_pick])
    plan.change(lambda p: gr.Textbox(visible=p == "custom"), [plan], [custom])
    update.click(hot_update, [path, plan, custom, mode, force], [message, offer_version, offer_row, offer_button]).then(
        refresh, None, views)
    offer_button.click(roll_out_loaded, [offer_version, plan, custom], [message, offer_version, offer_row]).then(
        refresh, None, views)
    for name, label, button in buttons:
        button.click(command(name, label), None, [message, pending_command, confirm_row, confirm_text]).then(
            refresh, None, views)
    yes.click(confirmed, [pending_command], [message, pending_command, confirm_row]).then(refresh, None, views)
    no.click(lambda: ("", gr.update(visible=False)), None, [pending_command, confirm_row])
    load_button.click(load, [path], [message]).then(pickers, None, [path, unload_pick])
    unload_button.click(unload, [unload_pick], [message]).then(pickers, None, [path, unload_pick])
    tab.select(pickers, None, [path, unload_pick])
    gr.on([timer.tick, tab.select], refresh, None, views, show_progress="hidden")
    return timer
