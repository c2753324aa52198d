"""Playground tab: rank documents (text, images, videos) against a query; no credentials needed."""
from __future__ import annotations

import gradio as gr

from reranker.errors import RerankerError
from reranker.service import RerankService
from ui.documents import RANK_CONCURRENCY, document_editor, example_buttons, previews, query_inputs
from ui.entries import Entry, entry, rank_request
from ui.examples import load_examples
from ui.render import error_html, note_html, results_html
from ui.style import html_view


def build_playground_tab(service: RerankService) -> None:
    def rank(text: str, image: str | None, video: str | None, documents: tuple[Entry, ...], instruction: str,
             top_n: float | None, request: gr.Request, progress: gr.Progress = gr.Progress()) -> str:
        try:
            progress(0.1, desc="Reading media")
            ranked = rank_request(entry(text, image, video), documents, instruction, top_n, request.session_hash)
            progress(0.3, desc=f"Ranking {len(documents)} documents")
            result = service.rank(ranked)
        except RerankerError as exc:
            gr.Warning(str(exc))
            return error_html(str(exc))
        return results_html(result, previews(documents))

    with gr.Tab("Playground", id="playground"):
        with gr.Row():
            with gr.Column(scale=1):
                query = query_inputs("pg")
                gr.Markdown("**Documents**")
                editor = document_editor("pg")
                with gr.Accordion("Options", open=False):
                    instruction = gr.Textbox(label="Instruction (optional)", elem_id="pg-instruction")
                    top_n = gr.Number(label="Top-n (0 = all)", value=0, precision=0, elem_id="pg-top-n")
                rank_button = gr.Button("Rank", variant="primary", elem_id="pg-rank")
            with gr.Column(scale=1):
                gr.Markdown("**Examples** — one click loads a query and its documents")
                example_buttons("pg", load_examples(), query, editor, extra=[instruction])
                results = html_view(note_html("Results appear here."), elem_id="pg-results")
    rank_button.click(rank, [*query.components(), editor.state, instruction, top_n], [results],
                      concurrency_limit=RANK_CONCURRENCY)
