"""QwenScorer: the Reranker around a loaded Qwen3VLForConditionalGeneration.

score = sigmoid(h_last . (W_lm_head[yes] - W_lm_head[no])), h_last the final hidden state of the
last position of a left-padded batch. Only the inner model runs; no vocabulary logits are formed.
The yes-no direction is taken in the model's dtype (as the reference's score layer holds it)
and the dot product and sigmoid run in float32.
"""
from __future__ import annotations

import gc
from typing import Any, Sequence

import torch

from reranker.content import Pair
from reranker.errors import NotReady
from reranker.models.base import ModelInfo
from reranker.models.qwen3vl.inputs import EncodedPair, PairEncoder
from reranker.models.qwen3vl.prompt import MAX_LENGTH
from reranker.models.qwen3vl.vision import normalize

BACKEND_NAME = "qwen3-vl"
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TOKENS = 32768


def plan_batches(lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Group indices by length (longest first) so that size <= max_batch_size and
    size x longest <= max_batch_tokens (a single over-long item still gets its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        if current and len(current) < max_batch_size and (len(current) + 1) * lengths[current[0]] <= max_batch_tokens:
            current.append(index)
        else:
            batches.append([index])
    return batches


class QwenScorer:
    """Scores pairs with an in-memory Qwen3-VL model and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        name: str,
        path: str = "",
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_length: int = MAX_LENGTH,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._encoder = PairEncoder(tokenizer, max_length)
        yes_no = tokenizer.convert_tokens_to_ids(["yes", "no"])
        head = model.get_output_embeddings().weight
        self._direction = (head[yes_no[0]] - head[yes_no[1]]).detach().float()
        _drop_untied_lm_head(model)
        self._model = model
        self._inner = model.model
        self._input_device = self._inner.get_input_embeddings().weight.device
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self._last_lengths: tuple[tuple[int, ...], list[int]] = ((), [])  # (id of each pair, its tokens)
        self._info = ModelInfo(
            id=model_id,
            name=name,
            version=model_id,
            backend=BACKEND_NAME,
            dtype=str(model.dtype).removeprefix("torch."),
            device=_device_label(model),
            bytes_in_memory=int(model.get_memory_footprint()),
            path=path,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """Relevance in [0, 1] per pair, in the order given; batched and left-padded."""
        encoded = self.encode(pairs)
        self._last_lengths = (tuple(id(p) for p in pairs), [len(e) for e in encoded])
        scores = [0.0] * len(encoded)
        plan = plan_batches([len(e) for e in encoded], self.max_batch_size, self.max_batch_tokens)
        for indices in plan:
            for index, value in zip(indices, self.score_encoded([encoded[i] for i in indices])):
                scores[index] = value
        return scores

    def count_tokens(self, pairs: Sequence[Pair]) -> list[int]:
        """Prompt tokens per pair (text, image and video tokens after truncation): what the last
        score() call encoded when it was given these pairs, else encoded anew."""
        ids, lengths = self._last_lengths
        if ids == tuple(id(p) for p in pairs):
            return list(lengths)
        return [len(e) for e in self.encode(pairs)]

    def encode(self, pairs: Sequence[Pair]) -> list[EncodedPair]:
        """Prompt, media preprocessing and token ids (CPU only); InputError/MediaError name the pair."""
        if self._model is None:
            raise NotReady(f"model {self._info.id!r} is closed")
        return self._encoder.encode_all(pairs)

    @torch.inference_mode()
    def score_encoded(self, batch: Sequence[EncodedPair]) -> list[float]:
        """One forward pass over already encoded pairs (left-padded into one batch)."""
        if self._model is None:
            raise NotReady(f"model {self._info.id!r} is closed")
        inputs = {k: v.to(self._input_device) for k, v in self._encoder.collate(batch).items()}
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = normalize(inputs[key])
        output = self._inner(**inputs, use_cache=False, return_dict=True)
        last = output.last_hidden_state[:, -1, :].float()
        logits = last @ self._direction.to(last.device)
        return torch.sigmoid(logits).cpu().tolist()

    def close(self) -> None:
        """Drop the model and give its memory back (GPU cache included)."""
        on_cuda = "cuda" in self._info.device
        self._model = None
        self._inner = None
        self._direction = None
        gc.collect()
        if on_cuda and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _drop_untied_lm_head(model: Any) -> None:
    """The score needs two rows of lm_head, already copied; free it unless tied to the embeddings."""
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    if head.weight.data_ptr() != embed.weight.data_ptr():
        model.lm_head = torch.nn.Identity()


def _device_label(model: Any) -> str:
    device_map = getattr(model, "hf_device_map", None)
    if device_map and len(set(device_map.values())) > 1:
        labels = {f"cuda:{d}" if isinstance(d, int) else str(d) for d in device_map.values()}
        return ",".join(sorted(labels))
    return str(next(model.parameters()).device)
