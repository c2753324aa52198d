"""Operator actions from the browser: only a signed-in session (ui.sessions) may run them or see
operator data; the outcome is reported as HTML."""
from __future__ import annotations

from html import escape
from typing import Callable, Protocol

import gradio as gr

from reranker.errors import RerankerError
from ui.render import attr, note_html

ACTOR = "console"
SIGN_IN_HINT = "Sign in with the admin token on the Operator tab to see this."


class SessionCheck(Protocol):
    def is_operator(self, session: str | None) -> bool: ...


def session_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def is_operator(sessions: SessionCheck, request: gr.Request | None) -> bool:
    return sessions.is_operator(session_of(request))


def outcome_html(outcome: str, message: str) -> str:
    return (f'<div class="rr-outcome rr-{attr(outcome)}" data-testid="op-message" data-outcome="{attr(outcome)}">'
            f"{escape(message)}</div>")


def signed_out_html() -> str:
    return note_html(SIGN_IN_HINT)


def guarded(sessions: SessionCheck, request: gr.Request | None, what: str, action: Callable[[], str | None]) -> str:
    """Refuses unless this session signed in; a RerankerError becomes a warning toast and an error line."""
    if not is_operator(sessions, request):
        gr.Warning("Sign in with the admin token first (Operator tab)")
        return outcome_html("refused", f"{what}: refused — sign in with the admin token first")
    try:
        return outcome_html("ok", f"{what}: {action() or 'done'}")
    except RerankerError as exc:
        gr.Warning(str(exc))
        return outcome_html("error", f"{what}: {exc}")
