"""The status strip above the tabs: the light, and the banner while an update runs."""
from __future__ import annotations

import gradio as gr

from reranker.service import RerankService
from ui.render_status import banner_html
from ui.style import html_view

REFRESH_SECONDS = 2.0


def build_banner(service: RerankService) -> gr.HTML:
    """Placed above the tabs so it shows on every tab; refreshed by a timer."""
    banner = html_view(lambda: banner_html(service.status()), elem_id="status-banner")
    gr.Timer(REFRESH_SECONDS).tick(lambda: banner_html(service.status()), None, [banner], show_progress="hidden")
    return banner
