"""Assembles the tabs into one Blocks app."""
from __future__ import annotations

import gradio as gr

from reranker.service import RerankService


def build_ui(service: RerankService) -> gr.Blocks:
    with gr.Blocks(title="Multimodal reranker") as blocks:
        gr.Markdown("# Multimodal reranker")
    return blocks
