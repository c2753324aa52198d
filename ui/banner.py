"""The status strip above the tabs: the light, and the banner while an update runs. A signed-in
operator sees the service's banner; anyone else a neutral notice with no operator internals."""
from __future__ import annotations

import gradio as gr

from reranker.service import RerankService
from ui.guard import is_operator
from ui.render import skeleton_html
from ui.render_status import banner_html, public_banner_html
from ui.sessions import OperatorSessions
from ui.style import html_view

REFRESH_SECONDS = 2.0


def build_banner(service: RerankService, sessions: OperatorSessions) -> gr.HTML:
    """Placed above the tabs so it shows on every tab; refreshed by a timer."""
    def render(request: gr.Request) -> str:
        status = service.status()
        return banner_html(status) if is_operator(sessions, request) else public_banner_html(status)

    banner = html_view(skeleton_html("Checking the service…"), elem_id="status-banner")
    gr.on(None, render, None, [banner], show_progress="hidden")  # on page load, then every few seconds
    gr.Timer(REFRESH_SECONDS).tick(render, None, [banner], show_progress="hidden")
    return banner
