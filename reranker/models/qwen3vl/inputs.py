"""From pairs to model inputs: truncated prompt ids, vision tensors, left-padded batches, M-RoPE.

We compute the 3-D rotary positions ourselves (as HF `get_rope_index` does, identically in
transformers 4.57 and 5.x) and pass them to the model, so no version-specific processor output
such as `mm_token_type_ids` is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from reranker.content import Content, Pair
from reranker.errors import InputError
from reranker.models.qwen3vl.prompt import (
    IMAGE_PAD, MAX_LENGTH, VIDEO_PAD, SideVisuals, render_prompt, truncate,
)
from reranker.models.qwen3vl.vision import MERGE_SIZE, VisualInput, prepare_image, prepare_video


@dataclass(frozen=True, eq=False)
class EncodedPair:
    """One pair ready for batching: its token ids and its images and videos in prompt order."""

    input_ids: np.ndarray  # int64, unpadded
    images: tuple[VisualInput, ...]
    videos: tuple[VisualInput, ...]
    group: str = ""  # pairs with one group share instruction + query, hence a token prefix
    prefix_limit: int = 0  # tokens before the first document vision token (or the last token)
    query_images: int = 0  # the first query_images images and query_videos videos are the query's
    query_videos: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


class PairEncoder:
    """Renders, tokenizes and truncates pairs with the checkpoint's tokenizer."""

    def __init__(self, tokenizer: Any, max_length: int = MAX_LENGTH) -> None:
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._special_ids = frozenset(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
        self.pad_id = int(tokenizer.pad_token_id)
        self.image_pad_id = int(tokenizer.convert_tokens_to_ids(IMAGE_PAD))
        self.video_pad_id = int(tokenizer.convert_tokens_to_ids(VIDEO_PAD))

    def encode_all(self, pairs: Sequence[Pair], sides: dict[str, SideVisuals] | None = None,
                   first_index: int = 0) -> list[EncodedPair]:
        """Encode pairs; media shared between pairs (e.g. the query's) are preprocessed once
        (per call, or across calls that pass the same `sides`). The prompts are tokenized in one
        batch call (the fast tokenizer spreads it over threads, outside the GIL)."""
        cache: dict[str, SideVisuals] = {} if sides is None else sides
        rendered = []
        for index, pair in enumerate(pairs, start=first_index):
            try:
                rendered.append(self._render(pair, cache))
            except InputError as exc:
                raise type(exc)(f"pair {index}: {exc}") from exc
        if not rendered:
            return []
        token_ids = self._tokenizer([text for text, _, _ in rendered], add_special_tokens=False)["input_ids"]
        return [self._encoded(pair, ids, query, document)
                for pair, ids, (_, query, document) in zip(pairs, token_ids, rendered)]

    def encode(self, pair: Pair, sides: dict[str, SideVisuals] | None = None) -> EncodedPair:
        text, query, document = self._render(pair, {} if sides is None else sides)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._encoded(pair, ids, query, document)

    def _render(self, pair: Pair, cache: dict[str, SideVisuals]) -> tuple[str, SideVisuals, SideVisuals]:
        query = side_visuals(pair.query, cache)
        document = side_visuals(pair.document, cache)
        return render_prompt(pair, query, document), query, document

    def _encoded(self, pair: Pair, token_ids: Sequence[int], query: SideVisuals, document: SideVisuals) -> EncodedPair:
        ids = np.asarray(truncate(token_ids, self._special_ids, self._max_length), dtype=np.int64)
        query_pads = sum(v.num_tokens for v in query.images + query.videos)
        pads = np.flatnonzero((ids == self.image_pad_id) | (ids == self.video_pad_id))
        limit = int(pads[query_pads]) if len(pads) > query_pads else len(ids) - 1
        group = f"{pair.instruction or ''}\0{pair.query.digest}"
        return EncodedPair(
            ids,
            query.images + document.images,
            query.videos + document.videos,
            group=group,
            prefix_limit=min(limit, len(ids) - 1),
            query_images=len(query.images),
            query_videos=len(query.videos),
        )

    def collate(self, batch: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        """Left-padded input_ids, attention_mask, (3, B, L) position_ids and vision tensors."""
        length = max(len(item) for item in batch)
        input_ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
        position_ids = torch.ones((3, len(batch), length), dtype=torch.long)
        for row, item in enumerate(batch):
            start = length - len(item)
            input_ids[row, start:] = torch.from_numpy(item.input_ids)
            attention_mask[row, start:] = 1
            positions = mrope_positions(item, self.image_pad_id, self.video_pad_id)
            position_ids[:, row, start:] = torch.from_numpy(positions)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        images = [image for item in batch for image in item.images]
        videos = [video for item in batch for video in item.videos]
        if images:
            inputs["pixel_values"] = torch.from_numpy(np.concatenate([v.pixel_values for v in images]))
            inputs["image_grid_thw"] = torch.tensor([v.grid_thw for v in images], dtype=torch.long)
        if videos:
            inputs["pixel_values_videos"] = torch.from_numpy(np.concatenate([v.pixel_values for v in videos]))
            inputs["video_grid_thw"] = torch.tensor([v.grid_thw for v in videos], dtype=torch.long)
        return inputs


def mrope_positions(item: EncodedPair, image_pad_id: int, video_pad_id: int) -> np.ndarray:
    """(3, n) temporal/height/width positions of one unpadded sequence, as HF get_rope_index.

    Text advances all three by one per token. Each image, and each frame pair of a video, is one
    run of pads laid out on its merged (h, w) grid at the current position; the next position is
    then current + max(h, w).
    """
    ids = item.input_ids
    kind = (ids == image_pad_id).astype(np.int8) + 2 * (ids == video_pad_id).astype(np.int8)
    runs = {
        1: iter([_merged_hw(v) for v in item.images]),
        2: iter([_merged_hw(v) for v in item.videos for _ in range(v.grid_thw[0])]),
    }
    bounds = np.flatnonzero(np.diff(kind)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(ids)]])
    positions = np.empty((3, len(ids)), dtype=np.int64)
    current = 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        if kind[start] == 0:
            positions[:, start:end] = np.arange(current, current + end - start)
            current += end - start
            continue
        grid_h, grid_w = next(runs[int(kind[start])])
        if grid_h * grid_w != end - start:
            raise InputError(f"vision run of {end - start} tokens does not match grid {grid_h}x{grid_w}")
        rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
        positions[0, start:end] = current
        positions[1, start:end] = current + rows.ravel()
        positions[2, start:end] = current + cols.ravel()
        current += max(grid_h, grid_w)
    return positions


def _merged_hw(visual: VisualInput) -> tuple[int, int]:
    return visual.grid_thw[1] // MERGE_SIZE, visual.grid_thw[2] // MERGE_SIZE


def side_visuals(content: Content, cache: dict[str, SideVisuals]) -> SideVisuals:
    """The preprocessed videos and images of one side, memoised in cache by content digest."""
    if content.digest not in cache:
        cache[content.digest] = SideVisuals(
            tuple(prepare_video(v) for v in content.videos),
            tuple(prepare_image(i) for i in content.images),
        )
    return cache[content.digest]
