"""The public Gradio API (what gradio_client users call): `/rank` and `/compare`.

Each takes the query and every document as parameters (no session state): query text, an optional
query file (image or video), text documents one per line, and document files. Document indices are
the text lines first, then the files, in order. Each returns JSON data and, as a separate output,
the HTML view the Playground shows. Files are confined to Gradio's upload cache (ui.file_guard)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import gradio as gr

from reranker.errors import InputError, RerankerError
from reranker.service import RerankService
from reranker.service.types import CompareResult, RankResult
from ui.documents import RANK_CONCURRENCY, previews
from ui.entries import Entry, add_bulk, entry, kind_of, rank_request
from ui.render import compare_html, results_html
from ui.style import html_view


def documents_of(lines: str | None, files: Sequence[str] | None) -> tuple[Entry, ...]:
    if not (lines or "").strip() and not files:
        raise InputError("documents is empty: give text lines and/or document files")
    return add_bulk((), lines, list(files or ()))


def query_of(text: str | None, file: str | None) -> Entry:
    media = {kind_of(file): file} if file else {}
    return entry(text, media.get("image"), media.get("video"))


def rank_data(result: RankResult, documents: Sequence[Entry]) -> dict[str, Any]:
    labels = [p.label for p in previews(documents)]
    return {
        "model": result.version, "request_id": result.request_id, "latency_ms": round(result.latency_ms, 3),
        "n_documents": result.n_documents,
        "results": [{"index": d.index, "relevance_score": d.score,
                     "document": labels[d.index] if 0 <= d.index < len(labels) else None} for d in result.results],
    }


def compare_data(result: CompareResult, documents: Sequence[Entry]) -> dict[str, Any]:
    return {"a": rank_data(result.a, documents), "b": rank_data(result.b, documents),
            "changes": [asdict(c) for c in result.changes]}


def _raise(exc: RerankerError) -> None:
    raise gr.Error(str(exc), print_exception=False) from None


def build_public_api(service: RerankService) -> None:
    """Components that exist only to type the two endpoints; hidden from the page."""
    def rank(query: str, query_file: str | None, documents: str, document_files: list[str] | None,
             instruction: str, top_n: float | None) -> tuple[dict[str, Any], str]:
        try:
            docs = documents_of(documents, document_files)
            result = service.rank(rank_request(query_of(query, query_file), docs, instruction, top_n, None))
        except RerankerError as exc:
            _raise(exc)
        return rank_data(result, docs), results_html(result, previews(docs))

    def compare(query: str, query_file: str | None, documents: str, document_files: list[str] | None,
                version_a: str, version_b: str, top_k: float | None) -> tuple[dict[str, Any], str]:
        try:
            if not version_a or not version_b:
                raise InputError("version_a and version_b are required (see GET /v1/models)")
            docs = documents_of(documents, document_files)
            result = service.compare(rank_request(query_of(query, query_file), docs, None, top_k, None),
                                     (version_a, version_b))
        except RerankerError as exc:
            _raise(exc)
        return compare_data(result, docs), compare_html(result, previews(docs))

    with gr.Group(visible=False):
        query = gr.Textbox(label="query")
        query_file = gr.File(label="query_file", type="filepath", file_count="single")
        lines = gr.Textbox(label="documents", lines=4)
        files = gr.File(label="document_files", type="filepath", file_count="multiple")
        instruction = gr.Textbox(label="instruction")
        top_n = gr.Number(label="top_n", value=0, precision=0)
        version_a = gr.Textbox(label="version_a")
        version_b = gr.Textbox(label="version_b")
        top_k = gr.Number(label="top_k", value=10, precision=0)
        data = gr.JSON(label="data")
        view = html_view()
        run_rank = gr.Button(visible=False)
        run_compare = gr.Button(visible=False)
    run_rank.click(rank, [query, query_file, lines, files, instruction, top_n], [data, view], api_name="rank",
                   concurrency_limit=RANK_CONCURRENCY, concurrency_id="rank")
    run_compare.click(compare, [query, query_file, lines, files, version_a, version_b, top_k], [data, view],
                      api_name="compare", concurrency_limit=RANK_CONCURRENCY, concurrency_id="rank")
