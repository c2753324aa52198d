"""The Qwen3-VL-Reranker prompt, rendered by us (not by a chat template) and truncated per spec.

We render the text ourselves so it is identical whatever transformers version is installed.
Video parts follow transformers 4.57: `<{t:.1f} seconds><|vision_start|>` + pads +
`<|vision_end|>` per frame pair, with no outer vision_start/vision_end around the clip
(transformers 5.x adds one; we pin the 4.57 form the published model was run with).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from reranker.content import Content, Pair
from reranker.errors import InputError
from reranker.models.base import DEFAULT_INSTRUCTION
from reranker.models.qwen3vl.vision import VisualInput

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
RESERVED_IN_TEXT = (IMAGE_PAD, VIDEO_PAD)
MAX_LENGTH = 10240
TAIL_TOKENS = 5  # <|im_end|> \n <|im_start|> assistant \n


@dataclass(frozen=True, eq=False)
class SideVisuals:
    """The preprocessed media of one side (query or document), in content order."""

    videos: tuple[VisualInput, ...] = ()
    images: tuple[VisualInput, ...] = ()


def render_image(visual: VisualInput) -> str:
    return VISION_START + IMAGE_PAD * visual.tokens_per_frame + VISION_END


def render_video(visual: VisualInput) -> str:
    per_frame = VIDEO_PAD * visual.tokens_per_frame
    return "".join(f"<{t:.1f} seconds>{VISION_START}{per_frame}{VISION_END}" for t in visual.timestamps)


def render_side(content: Content, visuals: SideVisuals) -> str:
    """Videos, then images, then the text; `NULL` when the side has no content."""
    if content.is_empty():
        return "NULL"
    text = content.text or ""
    for token in RESERVED_IN_TEXT:
        if token in text:
            raise InputError(f"text may not contain the reserved token {token!r}")
    parts = [render_video(v) for v in visuals.videos] + [render_image(i) for i in visuals.images]
    return "".join(parts) + text


def render_prompt(pair: Pair, query: SideVisuals, document: SideVisuals) -> str:
    """The full prompt, as the chat template renders it with add_generation_prompt=True."""
    instruction = pair.instruction or DEFAULT_INSTRUCTION
    return (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n<Instruct>: {instruction}"
        f"<Query>:{render_side(pair.query, query)}"
        f"\n<Document>:{render_side(pair.document, document)}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def truncate(ids: Sequence[int], special_ids: Iterable[int], max_length: int = MAX_LENGTH) -> list[int]:
    """Keep the last 5 tokens; before them keep every special token and the first non-special ones.

    At most max_length tokens stay before the tail unless the special tokens alone exceed it
    (vision is never cut), exactly as the reference reranker truncates.
    """
    head, tail = list(ids[:-TAIL_TOKENS]), list(ids[-TAIL_TOKENS:])
    if len(head) <= max_length:
        return head + tail
    special = frozenset(special_ids)
    budget = max_length - sum(1 for token in head if token in special)
    kept: list[int] = []
    for token in head:
        if token in special:
            kept.append(token)
        elif budget > 0:
            kept.append(token)
            budget -= 1
    return kept + tail
