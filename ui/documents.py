"""Shared input widgets: a query (text/image/video), a document list editor, example buttons."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gradio as gr

from reranker.errors import InputError
from ui.entries import Entry, add_bulk, add_one
from ui.examples import Example
from ui.media import preview
from ui.render import Preview, documents_html
from ui.style import html_view

MEDIA_TYPES = ["image", "video"]
RANK_CONCURRENCY = 4  # browser sessions ranking at once; the engines batch their pairs


@dataclass(frozen=True)
class QueryInputs:
    text: gr.Textbox
    image: gr.Image
    video: gr.Video

    def components(self) -> list[gr.components.Component]:
        return [self.text, self.image, self.video]


@dataclass(frozen=True)
class DocumentEditor:
    state: gr.State  # tuple[Entry, ...]: plain values, never a model or a lock
    listing: gr.HTML


def previews(documents: Sequence[Entry]) -> list[Preview]:
    return [preview(d) for d in documents]


def listing_of(documents: Sequence[Entry]) -> str:
    return documents_html(previews(documents))


def query_inputs(prefix: str) -> QueryInputs:
    text = gr.Textbox(label="Query text", placeholder="e.g. a cat", elem_id=f"{prefix}-query-text")
    with gr.Row():
        image = gr.Image(label="Query image", type="filepath", sources=["upload", "clipboard"], height=160,
                         elem_id=f"{prefix}-query-image")
        video = gr.Video(label="Query video", sources=["upload"], height=160, elem_id=f"{prefix}-query-video")
    return QueryInputs(text, image, video)


def _add_one(documents: tuple[Entry, ...], text: str, image: str | None, video: str | None) -> tuple[Any, ...]:
    try:
        documents = add_one(documents, text, image, video)
    except InputError as exc:
        gr.Warning(str(exc))
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return documents, listing_of(documents), "", None, None


def _add_bulk(documents: tuple[Entry, ...], lines: str, files: list[str] | None) -> tuple[Any, ...]:
    try:
        documents = add_bulk(documents, lines, files)
    except InputError as exc:
        gr.Warning(str(exc))
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return documents, listing_of(documents), "", None


def _remove_last(documents: tuple[Entry, ...]) -> tuple[tuple[Entry, ...], str]:
    return documents[:-1], listing_of(documents[:-1])


def document_editor(prefix: str) -> DocumentEditor:
    """Add documents one by one (text and/or image and/or video) or in bulk (lines, many files)."""
    state = gr.State(())
    with gr.Accordion("Add many: paste lines, drop files", open=True):
        lines = gr.Textbox(label="Text documents, one per line", lines=4, elem_id=f"{prefix}-doc-lines")
        files = gr.File(label="Image/video documents (drop many)", file_count="multiple",
                        file_types=MEDIA_TYPES, type="filepath", elem_id=f"{prefix}-doc-files")
        add_many = gr.Button("Add all", elem_id=f"{prefix}-add-many")
    with gr.Accordion("Add one: text and/or image and/or video", open=False, elem_id=f"{prefix}-add-one-box"):
        text = gr.Textbox(label="Document text", elem_id=f"{prefix}-doc-text")
        with gr.Row():
            image = gr.Image(label="Document image", type="filepath", sources=["upload", "clipboard"], height=120,
                             elem_id=f"{prefix}-doc-image")
            video = gr.Video(label="Document video", sources=["upload"], height=120, elem_id=f"{prefix}-doc-video")
        add = gr.Button("Add document", elem_id=f"{prefix}-add-one")
    listing = html_view(listing_of(()), elem_id=f"{prefix}-documents")
    with gr.Row():
        remove = gr.Button("Remove last", size="sm")
        clear = gr.Button("Clear documents", size="sm", elem_id=f"{prefix}-clear")
    add.click(_add_one, [state, text, image, video], [state, listing, text, image, video])
    add_many.click(_add_bulk, [state, lines, files], [state, listing, lines, files])
    remove.click(_remove_last, [state], [state, listing])
    clear.click(lambda: ((), listing_of(())), None, [state, listing])
    return DocumentEditor(state, listing)


def example_buttons(prefix: str, examples: Sequence[Example], query: QueryInputs, editor: DocumentEditor,
                    extra: Sequence[gr.components.Component] = ()) -> None:
    """One button per example; a click fills the query and documents (and the instruction, if given)."""
    if not examples:
        gr.Markdown("_No ready-made examples found in assets/examples._")
        return
    with gr.Row(elem_classes="rr-examples"):
        for number, example in enumerate(examples):
            button = gr.Button(example.name, size="sm", elem_id=f"{prefix}-example-{number}")
            outputs = [*query.components(), editor.state, editor.listing, *extra]
            button.click(lambda ex=example: _fill(ex, bool(extra)), None, outputs)


def _fill(example: Example, with_instruction: bool) -> tuple[Any, ...]:
    values = (example.query.text or "", example.query.image, example.query.video, example.documents,
              listing_of(example.documents))
    return (*values, example.instruction or "") if with_instruction else values
