"""Pure HTML for the status light, banner, stage progress, gates, events and loaded versions."""
from __future__ import annotations

import time
from html import escape
from typing import Any, Sequence

from reranker.service.views import EventView, GateView, ProgressView, StatusView, VersionView
from ui.render import attr, note_html

IN_FLIGHT_STATES = frozenset({"loading", "validating", "rolling_out", "paused", "promoting", "rolling_back", "replacing"})
ENDED_STATES = frozenset({"promoted", "cancelled", "rolled_back", "failed", "interrupted", "idle"})
STATE_WORDS = {
    "starting": "starting up", "idle": "no update running", "loading": "loading the new version",
    "validating": "checking the new version on the golden set", "rolling_out": "rolling out",
    "paused": "paused (traffic share frozen)", "promoting": "finishing: the new version takes all traffic",
    "rolling_back": "rolling back", "replacing": "replacing in place (requests queue)",
    "promoted": "done: the new version serves everything", "cancelled": "cancelled",
    "rolled_back": "rolled back: acknowledge to clear", "failed": "failed: acknowledge to clear",
    "interrupted": "interrupted by a restart: acknowledge to clear",
}
LOADED_STATES = frozenset({"loading", "ready", "serving", "draining"})


def state_words(state: str) -> str:
    return STATE_WORDS.get(state, state.replace("_", " "))


GATE_FORMAT = {  # name -> (plain words, unit, factor from the gate's own unit, how the limit binds)
    "latency_p95": ("Candidate P95 latency", "ms", 1000.0, "≤"),
    "latency": ("Candidate slowdown vs stable (paired replays, median per pair)", "%", 1.0, "≤"),
    "error_rate": ("Candidate error rate", "%", 100.0, "≤"),
    "memory_growth": ("Memory growth since the load", "%", 100.0, "≤"),
    "golden_same_model": ("Largest score difference vs stable (golden set)", "", 1.0, "≤"),
    "golden_new_model": ("Ranking quality NDCG@5 (golden set)", "", 1.0, "≥"),
}
COMMAND_WORDS = {"pause": "pause", "resume": "resume", "promote": "promote now", "rollback": "roll back",
                 "acknowledge": "acknowledge", "cancel": "cancel"}


LIGHT_WORDS = {"green": "stable", "yellow": "update in progress", "red": "needs attention"}


def light_html(light: str, testid: str = "light") -> str:
    word = LIGHT_WORDS.get(light, light)
    return (
        f'<span class="rr-light rr-light-{attr(light)}" data-testid="{attr(testid)}" data-light="{attr(light)}"'
        f' title="{attr(word)}"><span class="rr-dot"></span>{escape(word)}</span>'
    )


def stage_html(stage: ProgressView | None) -> str:
    """Stage n/m with the candidate's traffic share and the time spent against the stage's minimum."""
    if stage is None:
        return '<div class="rr-stage" data-testid="stage" data-stage="0">No rollout stage in progress.</div>'
    fraction = min(max(stage.fraction, 0.0), 1.0)
    in_stage, stage_s = stage.seconds_in_stage, stage.stage_seconds
    timing = (f"{in_stage:.0f} s of at least {stage_s:.0f} s" if in_stage <= stage_s else
              f"minimum {stage_s:.0f} s done ({in_stage:.0f} s so far): waiting for the checks to decide")
    return (
        f'<div class="rr-stage" data-testid="stage" data-stage="{stage.stage}" data-stages="{stage.stages}"'
        f' data-share="{stage.share:.1f}" data-fraction="{fraction:.3f}">'
        f"<b>Stage {stage.stage}/{stage.stages}</b> · new version's share of traffic <b>{stage.share:.0f}%</b> · {timing}"
        f'<span class="rr-bar rr-progress"><span class="rr-fill" style="width:{fraction * 100:.1f}%"></span></span></div>'
    )


STEP_WORDS = {"done": "done", "current": "now", "holding": "holding", "pending": "next", "stopped": "stopped"}


def steps_html(status: StatusView) -> str:
    """The plan as a step list (as Argo Rollouts shows it): share, time, state, and for the current
    step its checks and what it waits for."""
    if not status.steps:
        return ""
    gates = [g for g in status.gates if not g.name.startswith("golden")]
    items = []
    for step in status.steps:
        what = f"{step.share:.0f}% of traffic to the new version"
        if step.seconds:
            what += f", {'ramping over' if step.ramp else 'for'} at least {step.seconds:.0f} s"
        extra = ""
        if step.state in ("current", "holding"):
            if status.stage is not None:
                extra += f" · {status.stage.seconds_in_stage:.0f} s in this step"
            if status.holding:
                extra += f" · {escape(status.holding)}"
            if gates:
                extra += " · checks: " + ", ".join(
                    f"{gate_words(g.name)} {OUTCOME_WORDS[gate_outcome(g, status.state)]}" for g in gates)
        items.append(f'<li data-step="{step.stage}" data-status="{attr(step.state)}">'
                     f'<b>Step {step.stage}</b> ({STEP_WORDS.get(step.state, step.state)}): '
                     f'{escape(what)}{extra}</li>')
    return f'<ol class="rr-steps" data-testid="steps">{"".join(items)}</ol>'


def banner_html(status: StatusView) -> str:
    """The strip on every tab: the light, and the banner text while an update runs or needs attention."""
    shown = status.banner or (f"Serving {status.stable}" if status.stable else "No model is serving yet")
    bar = (
        f'<span class="rr-bar rr-progress"><span class="rr-fill" style="width:{status.stage.fraction * 100:.1f}%">'
        "</span></span>" if status.stage is not None else ""
    )
    return (
        f'<div class="rr-banner rr-banner-{attr(status.light)}" data-testid="banner" data-state="{attr(status.state)}"'
        f' data-light="{attr(status.light)}" data-active="{str(bool(status.banner)).lower()}">'
        f'{light_html(status.light, "banner-light")}<span class="rr-banner-text">{escape(shown)}</span>{bar}</div>'
    )


SHARED_TRAFFIC_STATES = frozenset({"rolling_out", "paused", "promoting"})


def public_banner_html(status: StatusView) -> str:
    """The strip for anyone not signed in: whether answers may come from a new version, nothing else
    (no version names, reasons, gates or 'needs attention': those are operator data)."""
    if not status.stable:
        light, text = "yellow", "Starting up: ranking is available as soon as the model is loaded."
    elif status.state in SHARED_TRAFFIC_STATES:
        light, text = "yellow", "A model update is in progress: some answers may come from the new version."
    else:
        light, text = "green", "Ranking is available."
    return (
        f'<div class="rr-banner rr-banner-neutral" data-testid="banner" data-light="{light}" data-public="true"'
        f' data-active="{str(light != "green").lower()}">'
        f'<span class="rr-banner-text" data-testid="banner-text">{escape(text)}</span></div>'
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape("—" if value is None else str(value))


def _with_unit(value: float | None, unit: str, factor: float) -> str:
    if value is None:
        return "—"
    shown = value * factor
    return f"{shown:.1f} {unit}".strip() if unit else f"{shown:.4g}"


def gate_words(name: str) -> str:
    return GATE_FORMAT.get(name, (name.replace("_", " "), "", 1.0, "≤"))[0]


def gate_outcome(gate: GateView, state: str) -> str:
    """passed | failed | pending (still deciding) | undecided (the update ended before it decided)."""
    if gate.pending:
        return "pending" if state in IN_FLIGHT_STATES else "undecided"
    return "passed" if gate.passed else "failed"


OUTCOME_WORDS = {"passed": "passed", "failed": "failed", "pending": "waiting for evidence",
                 "undecided": "not decided (the update ended)"}


def gates_html(gates: Sequence[GateView], state: str = "rolling_out") -> str:
    if not gates:
        return note_html("No gate results yet.")
    rows = []
    for gate in gates:
        words, unit, factor, sign = GATE_FORMAT.get(gate.name, (gate.name.replace("_", " "), "", 1.0, "≤"))
        if gate.unit:  # the gate states its own unit: values are already in it
            unit, factor = ("" if gate.unit in ("score", "NDCG@5") else gate.unit), 1.0
        outcome = gate_outcome(gate, state)
        rows.append(
            f'<tr data-gate="{attr(gate.name)}" data-outcome="{attr(outcome)}">'
            f'<td>{escape(words)}</td><td>{_with_unit(gate.observed, unit, factor)}</td>'
            f'<td>{sign} {_with_unit(gate.threshold, unit, factor)}</td>'
            f'<td class="rr-{attr(outcome)}">{escape(OUTCOME_WORDS[outcome])}</td>'
            f'<td>{_cell(gate.detail)}</td></tr>'
        )
    head = "<tr><th>check</th><th>observed</th><th>limit</th><th>outcome</th><th>detail</th></tr>"
    return f'<div class="rr-table-wrap"><table class="rr-table" data-testid="gates">{head}{"".join(rows)}</table></div>'


def _when(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def events_html(events: Sequence[EventView], limit: int = 30) -> str:
    if not events:
        return note_html("No events yet.")
    items = "".join(
        f'<li data-kind="{attr(e.kind)}" data-level="{attr(e.level)}"'
        f' class="rr-level-{attr(e.level)}"><span class="rr-when">{_when(e.at)}</span> '
        f'<b>{_cell(e.kind)}</b> {_cell(e.message)}'
        f'{" — " + escape(e.actor) if e.actor else ""}</li>'
        for e in list(events)[:limit]
    )
    return f'<ol class="rr-events" data-testid="events">{items}</ol>'


def _megabytes(value: int | None) -> str:
    return f"{value / 1e6:.0f} MB" if value else "—"


def versions_html(versions: Sequence[VersionView]) -> str:
    """Versions in memory only (loading, ready, serving, draining): unloaded ones are history."""
    loaded = [v for v in versions if v.state in LOADED_STATES]
    if not loaded:
        return note_html("No model versions loaded.")
    rows = "".join(
        f'<tr data-version="{attr(v.id)}" data-state="{attr(v.state)}"'
        f' data-stable="{str(v.stable).lower()}" data-share="{v.share:.1f}">'
        f'<td><b>{_cell(v.id)}</b>{" ★ stable" if v.stable else ""}</td><td>{_cell(v.state)}</td>'
        f'<td>{v.share:.0f}%</td><td>{_cell(v.backend)}</td><td>{_cell(v.dtype)}</td>'
        f'<td>{_cell(v.device)}</td><td>{_megabytes(v.bytes_in_memory)}</td>'
        f'<td>{_cell(v.in_flight)}</td><td>{_cell(v.path)}</td><td>{_cell(v.reason)}</td></tr>'
        for v in loaded
    )
    head = (
        "<tr><th>version</th><th>state</th><th>traffic share</th><th>backend</th><th>dtype</th><th>device</th>"
        "<th>memory</th><th>requests in flight</th><th>path</th><th>note</th></tr>"
    )
    return f'<div class="rr-table-wrap"><table class="rr-table" data-testid="versions">{head}{rows}</table></div>'


def operator_panel_html(status: StatusView) -> str:
    """Light, state in plain words, the candidate while an update is in flight, the plan's steps."""
    candidate = (f' · new version <b data-testid="candidate">{_cell(status.candidate)}</b>'
                 if status.state in IN_FLIGHT_STATES and status.candidate else "")
    who = (
        f'stable <b data-testid="stable">{_cell(status.stable)}</b>{candidate}'
        f' · <span data-testid="state" data-state="{attr(status.state)}">{escape(state_words(status.state))}</span>'
    )
    return (
        f'<div class="rr-panel">{light_html(status.light)}<div class="rr-meta">{who}</div>'
        f'<div class="rr-banner-text">{escape(status.banner)}</div>'
        f"{stage_html(status.stage)}{steps_html(status)}</div>"
    )
