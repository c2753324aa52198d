"""Assembles the status banner (on every tab) and one tab per area into one Blocks app."""
from __future__ import annotations

import gradio as gr

from reranker.service import RerankService
from ui.banner import build_banner
from ui.compare import build_compare_tab
from ui.experiments import build_experiments_tab
from ui.operator import build_operator_tab
from ui.playground import build_playground_tab


def build_ui(service: RerankService) -> gr.Blocks:
    with gr.Blocks(title="Multimodal reranker") as blocks:
        gr.Markdown("## Multimodal reranker console")
        build_banner(service)
        with gr.Tabs():
            build_playground_tab(service)
            build_compare_tab(service)
            build_operator_tab(service)
            build_experiments_tab(service)
    return blocks
