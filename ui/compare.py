"""Compare tab: one query ranked by two versions side by side, rank changes marked."""
from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from reranker.errors import InputError, RerankerError
from reranker.service import RerankService
from ui.documents import (
    RANK_CONCURRENCY, document_editor, example_buttons, mark_stale_on_change, previews, query_inputs,
)
from ui.entries import Entry, entry, rank_request
from ui.examples import load_examples
from ui.render import compare_html, error_html, pending_html, skeleton_html
from ui.style import html_view


def default_pair(usable: list[str], stable: str | None) -> tuple[str | None, str | None]:
    """A = the stable version, B = the first other usable version."""
    first = stable if stable in usable else (usable[0] if usable else None)
    second = next((v for v in usable if v != first), None)
    return first, second


def build_compare_tab(service: RerankService) -> None:
    def refresh_versions() -> tuple[Any, Any]:
        usable = service.usable_versions()
        a, b = default_pair(usable, service.stable_version())
        return gr.Dropdown(choices=usable, value=a), gr.Dropdown(choices=usable, value=b)

    def compare(version_a: str | None, version_b: str | None, text: str, image: str | None, video: str | None,
                documents: tuple[Entry, ...], top_k: float | None, request: gr.Request) -> Iterator[str]:
        try:
            if not version_a or not version_b:
                raise InputError("choose two versions to compare (an operator can load a second one)")
            ranked = rank_request(entry(text, image, video), documents, None, top_k, request.session_hash)
            yield pending_html(f"Ranking {len(documents)} documents with {version_a}, then {version_b}…")
            result = service.compare(ranked, (version_a, version_b))
        except RerankerError as exc:
            yield error_html(str(exc))
            return
        yield compare_html(result, previews(documents))

    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row():
            version_a = gr.Dropdown(label="Version A", choices=[], elem_id="cmp-version-a")
            version_b = gr.Dropdown(label="Version B", choices=[], elem_id="cmp-version-b")
            top_k = gr.Number(label="Top-k for rank changes", value=10, precision=0, elem_id="cmp-top-k")
            reload = gr.Button("↻ versions", size="sm", elem_id="cmp-refresh")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, elem_id="cmp-input-col"):
                query = query_inputs("cmp")
                editor = document_editor("cmp", service.settings.limits.max_documents)
            with gr.Column(scale=1, elem_id="cmp-output-col"):
                example_buttons("cmp", load_examples(), query, editor)
                with gr.Row(elem_id="cmp-run-bar"):
                    run = gr.Button("Compare", variant="primary", elem_id="cmp-run")
                output = html_view(skeleton_html("The two rankings appear here."), elem_id="cmp-results")
    gr.on([tab.select, reload.click], refresh_versions, None, [version_a, version_b])
    gr.on(None, refresh_versions, None, [version_a, version_b])
    run.click(compare, [version_a, version_b, *query.components(), editor.state, top_k], [output], api_name="compare_tab",
              concurrency_limit=RANK_CONCURRENCY, show_progress="minimal", scroll_to_output=True)
    mark_stale_on_change("cmp-results", [*query.components(), editor.listing, version_a, version_b, top_k])
