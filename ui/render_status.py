"""Pure HTML for the status light, banner, stage progress, gates, events and loaded versions."""
from __future__ import annotations

import time
from html import escape
from typing import Any, Mapping, Sequence

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


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def stage_html(stage: Mapping[str, Any] | None) -> str:
    """Stage n/m with the candidate's traffic share and the time spent against the stage's minimum."""
    if not stage:
        return '<div class="rr-stage" data-testid="stage" data-stage="0">No rollout stage in progress.</div>'
    number, total = int(_number(stage.get("stage"))), int(_number(stage.get("stages")))
    share, fraction = _number(stage.get("share")), min(max(_number(stage.get("fraction")), 0.0), 1.0)
    in_stage, stage_s = _number(stage.get("seconds_in_stage")), _number(stage.get("stage_seconds"))
    timing = (f"{in_stage:.0f} s of at least {stage_s:.0f} s" if in_stage <= stage_s else
              f"minimum {stage_s:.0f} s done ({in_stage:.0f} s so far): waiting for the checks to decide")
    return (
        f'<div class="rr-stage" data-testid="stage" data-stage="{number}" data-stages="{total}"'
        f' data-share="{share:.1f}" data-fraction="{fraction:.3f}">'
        f"<b>Stage {number}/{total}</b> · new version's share of traffic <b>{share:.0f}%</b> · {timing}"
        f'<span class="rr-bar rr-progress"><span class="rr-fill" style="width:{fraction * 100:.1f}%"></span></span></div>'
    )


def _derived_steps(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plan's stages with done/current/pending when the status has no step list of its own."""
    plan = status.get("plan")
    stages = plan.get("stages") if isinstance(plan, Mapping) else None
    if not stages:
        return []
    state = str(status.get("state") or "")
    progress = status.get("progress") or status.get("stage")
    current = int(_number(progress.get("stage"))) - 1 if isinstance(progress, Mapping) else -1
    if state in ("promoting", "promoted"):
        current = len(stages)
    steps = []
    for i, stage in enumerate(stages):
        step_state = "done" if i < current else ("current" if i == current and state in ("rolling_out", "paused")
                                                 else "pending")
        steps.append({"stage": i + 1, "share": stage.get("share"), "seconds": stage.get("seconds"),
                      "ramp": stage.get("ramp"), "state": step_state})
    return steps


STEP_WORDS = {"done": "done", "current": "now", "holding": "holding", "pending": "next", "stopped": "stopped"}


def steps_html(status: Mapping[str, Any]) -> str:
    """The plan as a step list (as Argo Rollouts shows it): share, time, state, and for the current
    step its checks and what it waits for."""
    steps = status.get("steps") or _derived_steps(status)
    if not steps:
        return ""
    state = str(status.get("state") or "")
    progress = status.get("progress") or status.get("stage")
    gates = [g for g in status.get("gates") or [] if not str(g.get("name", "")).startswith("golden")]
    items = []
    for step in steps:
        step_state = str(step.get("state") or "pending")
        share, seconds = _number(step.get("share")), _number(step.get("seconds"))
        what = f"{share:.0f}% of traffic to the new version"
        if seconds:
            what += f", {'ramping over' if step.get('ramp') else 'for'} at least {seconds:.0f} s"
        extra = ""
        if step_state in ("current", "holding"):
            if isinstance(progress, Mapping):
                extra += f" · {_number(progress.get('seconds_in_stage')):.0f} s in this step"
            if status.get("holding"):
                extra += f" · {escape(str(status['holding']))}"
            if gates:
                extra += " · checks: " + ", ".join(
                    f"{GATE_FORMAT.get(str(g.get('name')), (str(g.get('name')),))[0]} {OUTCOME_WORDS[gate_outcome(g, state)]}"
                    for g in gates)
        items.append(f'<li data-step="{int(_number(step.get("stage")))}" data-status="{attr(step_state)}">'
                     f'<b>Step {int(_number(step.get("stage")))}</b> ({STEP_WORDS.get(step_state, step_state)}): '
                     f'{escape(what)}{extra}</li>')
    return f'<ol class="rr-steps" data-testid="steps">{"".join(items)}</ol>'


def banner_html(status: Mapping[str, Any]) -> str:
    """The strip on every tab: the light, and the banner text while an update runs or needs attention."""
    light = str(status.get("light") or "red")
    state = str(status.get("state") or "unknown")
    text = str(status.get("banner") or "")
    stable = status.get("stable")
    shown = text or (f"Serving {stable}" if stable else "No model is serving yet")
    stage = status.get("stage") or status.get("progress")
    fraction = _number(stage.get("fraction")) if isinstance(stage, Mapping) else None
    bar = (
        f'<span class="rr-bar rr-progress"><span class="rr-fill" style="width:{fraction * 100:.1f}%"></span></span>'
        if fraction is not None else ""
    )
    return (
        f'<div class="rr-banner rr-banner-{attr(light)}" data-testid="banner" data-state="{attr(state)}"'
        f' data-light="{attr(light)}" data-active="{str(bool(text)).lower()}">'
        f'{light_html(light, "banner-light")}<span class="rr-banner-text">{escape(shown)}</span>{bar}</div>'
    )


SHARED_TRAFFIC_STATES = frozenset({"rolling_out", "paused", "promoting"})


def public_banner_html(status: Mapping[str, Any]) -> str:
    """The strip for anyone not signed in: whether answers may come from a new version, nothing else
    (no version names, reasons, gates or 'needs attention': those are operator data)."""
    if not status.get("stable"):
        light, text = "yellow", "Starting up: ranking is available as soon as the model is loaded."
    elif str(status.get("state") or "") in SHARED_TRAFFIC_STATES:
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


def _with_unit(value: Any, unit: str, factor: float) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—"
    shown = value * factor
    return f"{shown:.1f} {unit}".strip() if unit else f"{shown:.4g}"


def gate_outcome(gate: Mapping[str, Any], state: str) -> str:
    """passed | failed | pending (still deciding) | undecided (the update ended before it decided)."""
    if gate.get("pending"):
        return "pending" if state in IN_FLIGHT_STATES else "undecided"
    return "passed" if gate.get("passed") else "failed"


OUTCOME_WORDS = {"passed": "passed", "failed": "failed", "pending": "waiting for evidence",
                 "undecided": "not decided (the update ended)"}


def gates_html(gates: Sequence[Mapping[str, Any]], state: str = "rolling_out") -> str:
    if not gates:
        return note_html("No gate results yet.")
    rows = []
    for gate in gates:
        name = str(gate.get("name") or "")
        words, unit, factor, sign = GATE_FORMAT.get(name, (name.replace("_", " "), "", 1.0, "≤"))
        if isinstance(gate.get("unit"), str):  # the gate states its own unit: values are already in it
            unit, factor = ("" if gate["unit"] in ("score", "NDCG@5") else gate["unit"]), 1.0
        outcome = gate_outcome(gate, state)
        rows.append(
            f'<tr data-gate="{attr(name)}" data-outcome="{attr(outcome)}">'
            f'<td>{escape(words)}</td><td>{_with_unit(gate.get("observed"), unit, factor)}</td>'
            f'<td>{sign} {_with_unit(gate.get("threshold"), unit, factor)}</td>'
            f'<td class="rr-{attr(outcome)}">{escape(OUTCOME_WORDS[outcome])}</td>'
            f'<td>{_cell(gate.get("detail"))}</td></tr>'
        )
    head = "<tr><th>check</th><th>observed</th><th>limit</th><th>outcome</th><th>detail</th></tr>"
    return f'<div class="rr-table-wrap"><table class="rr-table" data-testid="gates">{head}{"".join(rows)}</table></div>'


def _when(at: Any) -> str:
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return time.strftime("%H:%M:%S", time.localtime(at))
    return escape(str(at or ""))


def events_html(events: Sequence[Mapping[str, Any]], limit: int = 30) -> str:
    if not events:
        return note_html("No events yet.")
    items = "".join(
        f'<li data-kind="{attr(e.get("kind", ""))}" data-level="{attr(e.get("level", "info"))}"'
        f' class="rr-level-{attr(e.get("level", "info"))}"><span class="rr-when">{_when(e.get("at"))}</span> '
        f'<b>{_cell(e.get("kind"))}</b> {_cell(e.get("message"))}'
        f'{" — " + escape(str(e["actor"])) if e.get("actor") else ""}</li>'
        for e in list(events)[:limit]
    )
    return f'<ol class="rr-events" data-testid="events">{items}</ol>'


def _megabytes(value: Any) -> str:
    return f"{value / 1e6:.0f} MB" if isinstance(value, (int, float)) and value else "—"


def versions_html(versions: Sequence[Mapping[str, Any]]) -> str:
    """Versions in memory only (loading, ready, serving, draining): unloaded ones are history."""
    loaded = [v for v in versions if v.get("state") in LOADED_STATES]
    if not loaded:
        return note_html("No model versions loaded.")
    rows = "".join(
        f'<tr data-version="{attr(v.get("id", ""))}" data-state="{attr(v.get("state", ""))}"'
        f' data-stable="{str(bool(v.get("stable"))).lower()}" data-share="{_number(v.get("share")):.1f}">'
        f'<td><b>{_cell(v.get("id"))}</b>{" ★ stable" if v.get("stable") else ""}</td><td>{_cell(v.get("state"))}</td>'
        f'<td>{_number(v.get("share")):.0f}%</td><td>{_cell(v.get("backend"))}</td><td>{_cell(v.get("dtype"))}</td>'
        f'<td>{_cell(v.get("device"))}</td><td>{_megabytes(v.get("bytes_in_memory"))}</td>'
        f'<td>{_cell(v.get("in_flight"))}</td><td>{_cell(v.get("path"))}</td><td>{_cell(v.get("reason"))}</td></tr>'
        for v in loaded
    )
    head = (
        "<tr><th>version</th><th>state</th><th>traffic share</th><th>backend</th><th>dtype</th><th>device</th>"
        "<th>memory</th><th>requests in flight</th><th>path</th><th>note</th></tr>"
    )
    return f'<div class="rr-table-wrap"><table class="rr-table" data-testid="versions">{head}{rows}</table></div>'


def operator_panel_html(status: Mapping[str, Any]) -> str:
    """Light, state in plain words, the candidate while an update is in flight, the plan's steps."""
    light = str(status.get("light") or "red")
    state = str(status.get("state") or "")
    stage = status.get("stage") or status.get("progress")
    candidate = (f' · new version <b data-testid="candidate">{_cell(status.get("candidate"))}</b>'
                 if state in IN_FLIGHT_STATES and status.get("candidate") else "")
    who = (
        f'stable <b data-testid="stable">{_cell(status.get("stable"))}</b>{candidate}'
        f' · <span data-testid="state" data-state="{attr(state)}">{escape(state_words(state))}</span>'
    )
    return (
        f'<div class="rr-panel">{light_html(light)}<div class="rr-meta">{who}</div>'
        f'<div class="rr-banner-text">{escape(str(status.get("banner") or ""))}</div>'
        f"{stage_html(stage if isinstance(stage, Mapping) else None)}{steps_html(status)}</div>"
    )
