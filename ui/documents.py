"""Shared input widgets: a query (text/image/video), a document list editor, example buttons."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gradio as gr

from reranker.errors import InputError, RerankerError
from ui.entries import Entry, add_bulk, add_one
from ui.examples import Example
from ui.file_guard import confine_upload
from ui.media import is_image, preview
from ui.render import Preview, documents_html
from ui.style import html_view

MEDIA_TYPES = ["image", "video"]
RANK_CONCURRENCY = 4  # browser sessions ranking at once; the engines batch their pairs
MARK_STALE_JS = """(...args) => {{
  const view = document.querySelector('#{elem_id} .rr-results');
  if (view) view.setAttribute('data-stale', 'true');
  return args;
}}"""


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


def checked_image(upload: dict[str, Any] | None) -> Any:
    """An upload to an image field that is not a readable image is cleared with a friendly message,
    so it cannot break every later Rank (the field would fail to read it each time)."""
    if not isinstance(upload, dict) or not upload.get("path"):
        return gr.skip()
    path = upload["path"]
    try:
        readable = is_image(confine_upload(path, "image") or "")
    except RerankerError:
        readable = False
    if readable:
        return gr.skip()
    name = upload.get("orig_name") or "that file"
    gr.Warning(f"{name} is not an image this page can read (try a JPEG, PNG, WebP or GIF); the field was cleared.")
    return None


def image_field(label: str, elem_id: str, height: int) -> gr.Image:
    image = gr.Image(label=label, type="filepath", sources=["upload", "clipboard"], height=height, elem_id=elem_id)
    image.upload(checked_image, [image], [image], preprocess=False, show_progress="hidden")
    return image


def query_inputs(prefix: str) -> QueryInputs:
    text = gr.Textbox(label="Query text", placeholder="e.g. a cat", elem_id=f"{prefix}-query-text")
    with gr.Row():
        image = image_field("Query image", f"{prefix}-query-image", 160)
        video = gr.Video(label="Query video", sources=["upload"], height=160, elem_id=f"{prefix}-query-video")
    return QueryInputs(text, image, video)


def mark_stale_on_change(results_id: str, inputs: Sequence[gr.components.Component]) -> None:
    """Marks shown results stale (in the browser, no server call) when an input changes."""
    for component in inputs:
        component.change(None, None, None, js=MARK_STALE_JS.format(elem_id=results_id))  # type: ignore[attr-defined]  # form fields all have .change


def _add_one(documents: tuple[Entry, ...], text: str, image: str | None, video: str | None,
             limit: int | None) -> tuple[Any, ...]:
    try:
        documents = add_one(documents, text, image, video, limit)
    except InputError as exc:
        gr.Warning(str(exc))
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return documents, listing_of(documents), "", None, None


def _add_bulk(documents: tuple[Entry, ...], lines: str, files: list[str] | None,
              limit: int | None) -> tuple[Any, ...]:
    try:
        documents = add_bulk(documents, lines, files, limit)
    except InputError as exc:
        gr.Warning(str(exc))
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return documents, listing_of(documents), "", None


def _remove_last(documents: tuple[Entry, ...]) -> tuple[tuple[Entry, ...], str]:
    return documents[:-1], listing_of(documents[:-1])


def document_editor(prefix: str, max_documents: int | None = None) -> DocumentEditor:
    """Add documents one by one (text and/or image and/or video) or in bulk (lines, many files);
    more than `max_documents` are refused when added."""
    state = gr.State(())
    with gr.Accordion("Add many: paste lines, drop files", open=True):
        lines = gr.Textbox(label="Text documents, one per line", lines=4, elem_id=f"{prefix}-doc-lines")
        files = gr.File(label="Image/video documents (drop many)", file_count="multiple",
                        file_types=MEDIA_TYPES, type="filepath", elem_id=f"{prefix}-doc-files")
        add_many = gr.Button("Add all", elem_id=f"{prefix}-add-many")
    with gr.Accordion("Add one: text and/or image and/or video", open=False, elem_id=f"{prefix}-add-one-box"):
        text = gr.Textbox(label="Document text", elem_id=f"{prefix}-doc-text")
        with gr.Row():
            image = image_field("Document image", f"{prefix}-doc-image", 120)
            video = gr.Video(label="Document video", sources=["upload"], height=120, elem_id=f"{prefix}-doc-video")
        add = gr.Button("Add document", elem_id=f"{prefix}-add-one")
    listing = html_view(listing_of(()), elem_id=f"{prefix}-documents")
    with gr.Row():
        remove = gr.Button("Remove last", size="sm")
        clear = gr.Button("Clear documents", size="sm", elem_id=f"{prefix}-clear")
    add.click(lambda documents, text_, image_, video_: _add_one(documents, text_, image_, video_, max_documents),
              [state, text, image, video], [state, listing, text, image, video])
    add_many.click(lambda documents, lines_, files_: _add_bulk(documents, lines_, files_, max_documents),
                   [state, lines, files], [state, listing, lines, files])
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
