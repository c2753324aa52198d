"""Assembles the status banner (on every tab) and one tab per area into one Blocks app."""
from __future__ import annotations

from typing import Collection

import gradio as gr

from reranker.service import RerankService
from ui import experiments, operator
from ui.banner import build_banner
from ui.compare import build_compare_tab
from ui.playground import build_playground_tab
from ui.public_api import build_public_api
from ui.sessions import OperatorSessions

PUBLIC_ENDPOINTS = frozenset({"rank", "compare"})  # ui.public_api: the documented gradio_client endpoints


def live_timers(selected: gr.SelectData) -> tuple[gr.Timer, gr.Timer]:
    """Only the shown tab's live views refresh (the banner always does)."""
    return (gr.Timer(active=selected.value == operator.TAB_LABEL),
            gr.Timer(active=selected.value == experiments.TAB_LABEL))


def hide_internal_endpoints(blocks: gr.Blocks, public: Collection[str] = PUBLIC_ENDPOINTS) -> None:
    """Every event but the named public ones is private: not in /gradio_api/info, view_api() or the
    OpenAPI page (the page itself still calls them by index; operator data is guarded per session)."""
    for fn in blocks.fns.values():
        if fn.api_name not in public:
            fn.api_visibility = "private"


def build_ui(service: RerankService) -> gr.Blocks:
    sessions = OperatorSessions(service.check_console_token, service.clock)
    with gr.Blocks(title="Multimodal reranker") as blocks:
        gr.Markdown("## Multimodal reranker console")
        build_banner(service, sessions)
        with gr.Tabs() as tabs:
            build_playground_tab(service)
            build_compare_tab(service)
            operator_timer = operator.build_operator_tab(service, sessions)
            experiments_timer = experiments.build_experiments_tab(service, sessions)
        tabs.select(live_timers, None, [operator_timer, experiments_timer])
        build_public_api(service)
    hide_internal_endpoints(blocks)
    # The same bound as the REST admission queue: events waiting beyond it are refused at once
    # ("Queue is full", shown to the browser user and raised by gradio_client), not held for ever.
    blocks.queue(max_size=service.settings.server.max_queue)
    return blocks
