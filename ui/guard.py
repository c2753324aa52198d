"""Operator actions from the browser: check the admin token, run, report the outcome as HTML."""
from __future__ import annotations

from html import escape
from typing import Callable, Protocol

import gradio as gr

from reranker.errors import RerankerError
from ui.render import attr

ACTOR = "console"


class TokenCheck(Protocol):
    def check_admin(self, token: str) -> bool: ...


def outcome_html(outcome: str, message: str) -> str:
    return (f'<div class="rr-outcome rr-{attr(outcome)}" data-testid="op-message" data-outcome="{attr(outcome)}">'
            f"{escape(message)}</div>")


def guarded(service: TokenCheck, token: str | None, what: str, action: Callable[[], str | None]) -> str:
    """Refuses unless the token checks; a RerankerError becomes a warning toast and an error line."""
    if not service.check_admin(token or ""):
        gr.Warning("Wrong or missing admin token")
        return outcome_html("refused", f"{what}: refused — wrong or missing admin token")
    try:
        return outcome_html("ok", f"{what}: {action() or 'done'}")
    except RerankerError as exc:
        gr.Warning(str(exc))
        return outcome_html("error", f"{what}: {exc}")
