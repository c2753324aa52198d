"""Operator sessions (server-side sign-in per page) and the neutral banner anonymous users see."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from reranker.clock import FakeClock  # noqa: E402
from reranker.service.views import StatusView  # noqa: E402
from ui.render_status import banner_html, public_banner_html  # noqa: E402
from ui.sessions import OperatorSessions  # noqa: E402


def _sessions(clock: FakeClock, **kwargs: float) -> OperatorSessions:
    return OperatorSessions(lambda token: token == "right", clock, **kwargs)  # type: ignore[arg-type]


def test_only_the_session_that_signed_in_is_an_operator() -> None:
    sessions = _sessions(FakeClock())
    assert not sessions.sign_in("a", "wrong") and not sessions.is_operator("a")
    assert sessions.sign_in("a", " right ") and sessions.is_operator("a")
    assert not sessions.is_operator("b") and not sessions.is_operator(None) and not sessions.is_operator("")
    assert not sessions.sign_in(None, "right")


def test_a_wrong_token_or_sign_out_ends_the_session_and_sessions_expire() -> None:
    clock = FakeClock()
    sessions = _sessions(clock, ttl_s=60)
    sessions.sign_in("a", "right")
    sessions.sign_in("a", "wrong")
    assert not sessions.is_operator("a")
    sessions.sign_in("b", "right")
    sessions.sign_out("b")
    assert not sessions.is_operator("b")
    sessions.sign_in("c", "right")
    clock.advance(61)
    assert not sessions.is_operator("c")


def test_sessions_are_bounded_oldest_first() -> None:
    clock = FakeClock()
    sessions = _sessions(clock, max_sessions=2)
    for name in ("a", "b", "c"):
        sessions.sign_in(name, "right")
        clock.advance(1)
    assert [sessions.is_operator(n) for n in "abc"] == [False, True, True]


def test_the_public_banner_names_no_version_reason_or_state() -> None:
    red = StatusView(**{"light": "red", "state": "rolled_back", "banner": "Last update rolled back: p95 gate failed — acknowledge",
           "stable": "mini-v1", "candidate": "mini-v2", "reason": "p95 gate failed"})
    html = public_banner_html(red)
    assert 'data-light="green"' in html and "Ranking is available" in html
    for secret in ("mini-v", "gate", "acknowledge", "rolled", "data-state", "attention"):
        assert secret not in html
    rolling = public_banner_html(StatusView(light="yellow", state="rolling_out", banner="", stable="mini-v1", candidate="mini-v2"))
    assert 'data-light="yellow"' in rolling and "update is in progress" in rolling and "mini-v2" not in rolling
    assert "Starting" in public_banner_html(StatusView(light="yellow", state="starting", banner="", stable=None))
    assert "acknowledge" in banner_html(red)  # the operator's banner keeps the detail
