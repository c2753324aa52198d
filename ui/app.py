"""Assembles the status banner (on every tab) and one tab per area into one Blocks app."""
from __future__ import annotations

import gradio as gr

from reranker.service import RerankService
from ui import experiments, operator
from ui.banner import build_banner
from ui.compare import build_compare_tab
from ui.playground import build_playground_tab


def live_timers(selected: gr.SelectData) -> tuple[gr.Timer, gr.Timer]:
    """Only the shown tab's live views refresh (the banner always does)."""
    return (gr.Timer(active=selected.value == operator.TAB_LABEL),
            gr.Timer(active=selected.value == experiments.TAB_LABEL))


def build_ui(service: RerankService) -> gr.Blocks:
    with gr.Blocks(title="Multimodal reranker") as blocks:
        gr.Markdown("## Multimodal reranker console")
        build_banner(service)
        with gr.Tabs() as tabs:
            build_playground_tab(service)
            build_compare_tab(service)
            operator_timer = operator.build_operator_tab(service)
            experiments_timer = experiments.build_experiments_tab(service)
        tabs.select(live_timers, None, [operator_timer, experiments_timer])
    return blocks
