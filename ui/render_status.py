"""Pure HTML for the status light, banner, stage progress, gates, events and loaded versions."""
from __future__ import annotations

import time
from html import escape
from typing import Any, Mapping, Sequence

from ui.render import attr, note_html

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
    """Stage n/m with the candidate's traffic share and the time spent in the stage."""
    if not stage:
        return '<div class="rr-stage" data-testid="stage" data-stage="0">No rollout stage in progress.</div>'
    number, total = int(_number(stage.get("stage"))), int(_number(stage.get("stages")))
    share, fraction = _number(stage.get("share")), min(max(_number(stage.get("fraction")), 0.0), 1.0)
    in_stage, stage_s = _number(stage.get("seconds_in_stage")), _number(stage.get("stage_seconds"))
    return (
        f'<div class="rr-stage" data-testid="stage" data-stage="{number}" data-stages="{total}"'
        f' data-share="{share:.1f}" data-fraction="{fraction:.3f}">'
        f"<b>Stage {number}/{total}</b> · candidate share <b>{share:.0f}%</b>"
        f" · {in_stage:.0f}s of {stage_s:.0f}s in this stage"
        f'<span class="rr-bar rr-progress"><span class="rr-fill" style="width:{fraction * 100:.1f}%"></span></span></div>'
    )


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


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape("—" if value is None else str(value))


def gates_html(gates: Sequence[Mapping[str, Any]]) -> str:
    if not gates:
        return note_html("No gate results yet.")
    rows = []
    for gate in gates:
        outcome = "pending" if gate.get("pending") else ("passed" if gate.get("passed") else "failed")
        rows.append(
            f'<tr data-gate="{attr(gate.get("name", ""))}" data-outcome="{outcome}">'
            f'<td>{_cell(gate.get("name"))}</td><td>{_cell(gate.get("observed"))}</td>'
            f'<td>{_cell(gate.get("threshold"))}</td><td class="rr-{outcome}">{outcome}</td>'
            f'<td>{_cell(gate.get("detail"))}</td></tr>'
        )
    head = "<tr><th>gate</th><th>observed</th><th>threshold</th><th>outcome</th><th>detail</th></tr>"
    return f'<table class="rr-table" data-testid="gates">{head}{"".join(rows)}</table>'


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
    if not versions:
        return note_html("No model versions loaded.")
    rows = "".join(
        f'<tr data-version="{attr(v.get("id", ""))}" data-state="{attr(v.get("state", ""))}"'
        f' data-stable="{str(bool(v.get("stable"))).lower()}" data-share="{_number(v.get("share")):.1f}">'
        f'<td><b>{_cell(v.get("id"))}</b>{" ★" if v.get("stable") else ""}</td><td>{_cell(v.get("state"))}</td>'
        f'<td>{_number(v.get("share")):.0f}%</td><td>{_cell(v.get("backend"))}</td><td>{_cell(v.get("dtype"))}</td>'
        f'<td>{_cell(v.get("device"))}</td><td>{_megabytes(v.get("bytes_in_memory"))}</td>'
        f'<td>{_cell(v.get("in_flight"))}</td><td>{_cell(v.get("path"))}</td><td>{_cell(v.get("reason"))}</td></tr>'
        for v in versions
    )
    head = (
        "<tr><th>version</th><th>state</th><th>share</th><th>backend</th><th>dtype</th><th>device</th>"
        "<th>memory</th><th>in flight</th><th>path</th><th>reason</th></tr>"
    )
    return f'<table class="rr-table" data-testid="versions">{head}{rows}</table>'


def operator_panel_html(status: Mapping[str, Any]) -> str:
    """Light, banner text, candidate and stage for the Operator tab."""
    light = str(status.get("light") or "red")
    stage = status.get("stage") or status.get("progress")
    who = (
        f'stable <b data-testid="stable">{_cell(status.get("stable"))}</b>'
        f' · candidate <b data-testid="candidate">{_cell(status.get("candidate"))}</b>'
        f' · state <b data-testid="state" data-state="{attr(status.get("state", ""))}">{_cell(status.get("state"))}</b>'
    )
    return (
        f'<div class="rr-panel">{light_html(light)}<div class="rr-meta">{who}</div>'
        f'<div class="rr-banner-text">{escape(str(status.get("banner") or ""))}</div>'
        f"{stage_html(stage if isinstance(stage, Mapping) else None)}</div>"
    )
