"""Playground tab: rank documents (text, images, videos) against a query; no credentials needed.

Input and output sit side by side, Rank right above the results (on a phone it stays pinned to the
bottom of the screen); results show in place while ranking and are marked stale when inputs change."""
from __future__ import annotations

from typing import Iterator

import gradio as gr

from reranker.errors import RerankerError
from reranker.service import RerankService
from ui.documents import (
    RANK_CONCURRENCY, document_editor, example_buttons, mark_stale_on_change, previews, query_inputs,
)
from ui.entries import Entry, entry, rank_request
from ui.examples import load_examples
from ui.render import error_html, instruction_note, pending_html, results_html, skeleton_html
from ui.style import html_view


def build_playground_tab(service: RerankService) -> None:
    def rank(text: str, image: str | None, video: str | None, documents: tuple[Entry, ...], instruction: str,
             top_n: float | None, request: gr.Request) -> Iterator[str]:
        try:
            ranked = rank_request(entry(text, image, video), documents, instruction, top_n, request.session_hash)
        except RerankerError as exc:
            yield error_html(str(exc))
            return
        yield pending_html(f"Ranking {len(documents)} documents…")
        try:
            result = service.rank(ranked)
        except RerankerError as exc:
            yield error_html(str(exc))
            return
        ignored = ranked.instruction is not None and not service.follows_instruction(result.version)
        yield results_html(result, previews(documents), instruction_note(result.version) if ignored else "")

    with gr.Tab("Playground", id="playground"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, elem_id="pg-input-col"):
                query = query_inputs("pg")
                gr.Markdown("**Documents**")
                editor = document_editor("pg", service.settings.limits.max_documents)
                with gr.Accordion("Options", open=False):
                    instruction = gr.Textbox(label="Instruction (optional)", elem_id="pg-instruction")
                    top_n = gr.Number(label="Top-n (0 = all)", value=0, precision=0, elem_id="pg-top-n")
            with gr.Column(scale=1, elem_id="pg-output-col"):
                gr.Markdown("**Examples** — one click loads a query and its documents")
                example_buttons("pg", load_examples(), query, editor, extra=[instruction])
                with gr.Row(elem_id="pg-rank-bar"):
                    rank_button = gr.Button("Rank", variant="primary", elem_id="pg-rank")
                results = html_view(skeleton_html("Results appear here: add a query and documents, then Rank."),
                                    elem_id="pg-results")
    rank_button.click(rank, [*query.components(), editor.state, instruction, top_n], [results], api_name="playground_rank",
                      concurrency_limit=RANK_CONCURRENCY, show_progress="minimal", scroll_to_output=True)
    mark_stale_on_change("pg-results", [*query.components(), editor.listing, instruction, top_n])
