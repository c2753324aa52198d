"""QwenScorer: the Reranker around a loaded Qwen3VLForConditionalGeneration.

score = sigmoid(h_last . (W_lm_head[yes] - W_lm_head[no])), h_last the final hidden state of the
last position of a left-padded batch. Only the inner model runs; no vocabulary logits are formed.
The yes-no direction is taken in the model's dtype (as the reference's score layer holds it)
and the dot product and sigmoid run in float32.
"""
from __future__ import annotations

import gc
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from reranker.content import Content, Pair
from reranker.errors import NotReady
from reranker.models.base import ModelInfo
from reranker.models.tokens import TextMeasure
from reranker.models.qwen3vl.fastpath import DocumentBatch, PrefixForward, PrefixState
from reranker.models.qwen3vl.kernels import SharedKernels
from reranker.models.qwen3vl.inputs import EncodedPair, PairEncoder, mrope_positions
from reranker.models.qwen3vl.prompt import MAX_LENGTH
from reranker.models.qwen3vl.vision import normalize
from reranker.models.qwen3vl.visiontower import stacked_visuals

BACKEND_NAME = "qwen3-vl"
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TOKENS = 32768
MIN_PREFIX_TOKENS = 8  # below this a shared prefix is not worth its own pass
PIPELINE_CHUNK = 32  # pairs encoded ahead (in a thread) while the GPU scores the previous chunk
log = logging.getLogger(__name__)
MEDIA_FIRST_CHUNK = 4  # with images or videos the chunks ramp up 4, 8, 16, ...: the GPU starts sooner
COMPILE_WAIT_S = 600.0  # every version waits in warm-up for the shared kernels to compile (at most this)


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


BatchWork = tuple[Any, Any, list[int], DocumentBatch]  # prefix key, prefix inputs (or None), pair indices, batch


@dataclass(frozen=True)
class PreparedPairs:
    """score()'s CPU work for some pairs (QwenScorer.prepare), ready for the device."""

    count: int
    work: tuple[BatchWork, ...]


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
        kernels: SharedKernels | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._encoder = PairEncoder(tokenizer, max_length)
        self._max_length = max_length
        self._text_measure = TextMeasure(tokenizer)
        yes_no = tokenizer.convert_tokens_to_ids(["yes", "no"])
        head = model.get_output_embeddings().weight
        self._direction = (head[yes_no[0]] - head[yes_no[1]]).detach().float()
        _drop_untied_lm_head(model)
        self._model = model
        self._inner = model.model
        self._input_device = self._inner.get_input_embeddings().weight.device
        self._fast = _prefix_forward(model, self._direction, self._encoder, kernels)
        self.load_phases: dict[str, float] = {}  # read / to_device seconds, set by the backend
        # On by default on CUDA; the CPU keeps the plain path (measured no faster there on a busy box).
        self.prefix_reuse = self._fast is not None and self._fast.device.type == "cuda"
        self.pipeline_chunk = PIPELINE_CHUNK
        self.compiled = threading.Event()  # set once fused kernels serve (or compiling gave up)
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

    def warm_up(self) -> None:
        """Run a small batch of the serving shape once (kernel selection, allocator, cuBLAS handles),
        and on CUDA have the shared compiled kernels built, and wait for them (up to
        COMPILE_WAIT_S; the eager kernels serve if it takes longer). Every version waits, the first
        one on a device included: compiling in this process holds the interpreter for a minute,
        and live requests served meanwhile waited seconds (P95 11 s at 16 clients on an H200), so
        a version is ready only once it serves at its normal speed. A version never scores with
        other kernels than the version it is compared with (a same-model golden check is exact
        only then)."""
        query = Content(text="warm-up query")
        self.score([Pair(query, Content(text="warm-up document " * 40)) for _ in range(4)])
        if self.prefix_reuse and self._fast is not None:
            self.compiled, _ = self._fast.compile_in_background()
            if not self.compiled.wait(COMPILE_WAIT_S):
                log.warning("%s: the compiled kernels are not built after %d s; the eager ones serve until they are",
                            self._info.id, COMPILE_WAIT_S)

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """Relevance in [0, 1] per pair, in the order given.

        With prefix reuse (one device holds the model): per group of pairs sharing instruction
        and query, the common token prefix runs once and the documents run right-padded against
        it; on CUDA the next chunk is encoded in a thread while the GPU works. Otherwise: plain
        left-padded batches through the HF model.
        """
        if self._model is None:
            raise NotReady(f"model {self._info.id!r} is closed")
        if self.prefix_reuse and self._fast is not None:
            return self._score_with_prefix(pairs)
        return self.score_plain(pairs)

    def score_plain(self, pairs: Sequence[Pair]) -> list[float]:
        """Left-padded batches through the HF model, no prefix reuse (the baseline)."""
        encoded = self.encode(pairs)
        self._last_lengths = (tuple(id(p) for p in pairs), [len(e) for e in encoded])
        scores = [0.0] * len(encoded)
        plan = plan_batches([len(e) for e in encoded], self.max_batch_size, self.max_batch_tokens)
        for indices in plan:
            for index, value in zip(indices, self.score_encoded([encoded[i] for i in indices])):
                scores[index] = value
        return scores

    def prepare(self, pairs: Sequence[Pair]) -> PreparedPairs | None:
        """The CPU part of score(pairs) (prompts, tokens, media preprocessing, planned batches,
        pinned on CUDA), for score_prepared() to run on the device later: a caller that holds the
        device for the pass alone (the engine's isolated lane) does this first, outside. The
        batches are the ones score(pairs) runs. None where the model scores without prefix reuse
        (score() then does everything)."""
        if self._model is None:
            raise NotReady(f"model {self._info.id!r} is closed")
        if not (self.prefix_reuse and self._fast is not None):
            return None
        lengths = [0] * len(pairs)
        work = [item for chunk in self._prepared(pairs, lengths, pipelined=False) for item in chunk]
        return PreparedPairs(len(pairs), tuple(work))

    def score_prepared(self, prepared: PreparedPairs) -> list[float]:
        """The device part of score() for what prepare() returned: relevance per pair, in order."""
        if self._model is None:
            raise NotReady(f"model {self._info.id!r} is closed")
        return self._run_prepared(prepared.count, [list(prepared.work)])

    def _score_with_prefix(self, pairs: Sequence[Pair]) -> list[float]:
        lengths = [0] * len(pairs)
        scores = self._run_prepared(len(pairs), self._prepared(pairs, lengths))
        self._last_lengths = (tuple(id(p) for p in pairs), lengths)
        return scores

    @torch.inference_mode()
    def _run_prepared(self, count: int, chunks: Iterable[list[BatchWork]]) -> list[float]:
        """Prefix and document passes over planned batches; prefix inputs and batches move to the
        device here, from pinned memory without blocking (a pageable copy would wait for the GPU)."""
        fast = self._fast
        assert fast is not None
        prefixes: dict[tuple[str, bytes], PrefixState | None] = {}
        outputs: list[tuple[list[int], torch.Tensor]] = []
        for work in chunks:
            for key, prefix_inputs, indices, batch in work:
                if key not in prefixes:
                    prefixes[key] = None
                    if prefix_inputs is not None:
                        ids, positions, images, videos = prefix_inputs
                        prefixes[key] = fast.prefix(ids.to(fast.device, non_blocking=True),
                                                    positions.to(fast.device, non_blocking=True), images, videos)
                outputs.append((indices, fast.documents(_to_device(batch, fast.device), prefixes[key])))
        scores = [0.0] * count
        if not outputs:
            return scores
        values = torch.sigmoid(torch.cat([logits for _, logits in outputs])).cpu().tolist()
        order = [index for indices, _ in outputs for index in indices]
        for index, value in zip(order, values):
            scores[index] = value
        return scores

    def _prepared(self, pairs: Sequence[Pair], lengths: list[int], pipelined: bool = True
                  ) -> Iterator[list[BatchWork]]:
        """Chunks of planned batches; on CUDA (unless pipelined is False) chunk k+1 is encoded in a
        thread during chunk k. The token count of each pair goes into lengths."""
        sides: dict = {}
        on_cuda = self._fast is not None and self._fast.device.type == "cuda"
        pipelined = pipelined and on_cuda
        step = max(1, self.pipeline_chunk)
        first = step
        if on_cuda and any(p.document.images or p.document.videos for p in pairs[:step]):
            first = min(step, MEDIA_FIRST_CHUNK)
        chunks = chunk_ranges(len(pairs), first, step)

        def prepare(chunk: range) -> list[BatchWork]:
            encoded = self._encoder.encode_all([pairs[i] for i in chunk], sides, first_index=chunk.start)
            for index, item in zip(chunk, encoded):
                lengths[index] = len(item)
            return self._plan_prefix_batches(list(chunk), encoded)

        if not pipelined or len(chunks) < 2:
            for chunk in chunks:
                yield prepare(chunk)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qwen-encode") as pool:
            future = pool.submit(prepare, chunks[0])
            for chunk in chunks[1:]:
                ready = future.result()
                future = pool.submit(prepare, chunk)
                yield ready
            yield future.result()

    def _plan_prefix_batches(self, indices: list[int], encoded: list[EncodedPair]) -> list[BatchWork]:
        groups: dict[str, list[int]] = {}
        for position, item in enumerate(encoded):
            groups.setdefault(item.group, []).append(position)
        work = []
        for group, members in groups.items():
            items = [encoded[m] for m in members]
            length = shared_prefix_length(items)
            if length < MIN_PREFIX_TOKENS:
                length = 0
            first = items[0]
            prefix_ids = first.input_ids[:length]
            key = (group, prefix_ids.tobytes())
            prefix_inputs = None
            if length:
                positions = mrope_positions(first, self._encoder.image_pad_id, self._encoder.video_pad_id)
                prefix_inputs = (  # on the CPU (pinned on CUDA): _run_prepared moves them
                    _pinned(torch.from_numpy(np.ascontiguousarray(prefix_ids[None]))),
                    _pinned(torch.from_numpy(np.ascontiguousarray(positions[:, None, :length]))),
                    first.images[:first.query_images],
                    first.videos[:first.query_videos],
                )
            plan = plan_batches([len(item) - length for item in items], self.max_batch_size, self.max_batch_tokens)
            for rows in plan:
                batch = [items[r] for r in rows]
                work.append((key, prefix_inputs, [indices[members[r]] for r in rows],
                             document_batch(batch, length, self._encoder)))
        return work

    def text_tokens(self, text: str) -> int:
        """Tokens of a text with the checkpoint's tokenizer: what the API's token limits count."""
        return self._text_measure.count(text)

    def cut_text(self, text: str, max_tokens: int) -> str:
        return self._text_measure.cut(text, max_tokens)

    def dropped_tokens(self, query_text: str, document_text: str) -> int:
        """Text tokens over the model's input limit (prompt template and media tokens, which
        are never cut, not counted: the figure is a lower bound)."""
        return max(0, self.text_tokens(query_text) + self.text_tokens(document_text) - self._max_length)

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


def chunk_ranges(count: int, first: int, step: int) -> list[range]:
    """Consecutive ranges over count items: sizes first, 2 x first, ... up to step, then step."""
    chunks = []
    start, size = 0, max(1, first)
    while start < count:
        chunks.append(range(start, min(start + size, count)))
        start += size
        size = min(step, size * 2)
    return chunks


def shared_prefix_length(items: Sequence[EncodedPair]) -> int:
    """Tokens every item starts with, before any document vision token and the last token."""
    limit = min(item.prefix_limit for item in items)
    first = items[0].input_ids[:limit]
    for item in items[1:]:
        other = item.input_ids[:limit]
        differ = np.flatnonzero(first[:len(other)] != other)
        limit = int(differ[0]) if len(differ) else min(limit, len(other))
        first = first[:limit]
    return limit


def document_batch(batch: Sequence[EncodedPair], prefix: int, encoder: PairEncoder) -> DocumentBatch:
    """The tokens after `prefix` of each pair, right-padded, with their full-sequence positions.

    Right padding keeps every real token's causal view free of pads; `last` picks the scored token.
    """
    length = max(len(item) for item in batch) - prefix
    input_ids = torch.full((len(batch), length), encoder.pad_id, dtype=torch.long)
    position_ids = torch.zeros((3, len(batch), length), dtype=torch.long)
    last = torch.empty(len(batch), dtype=torch.long)
    images = []
    videos = []
    for row, item in enumerate(batch):
        count = len(item) - prefix
        input_ids[row, :count] = torch.from_numpy(item.input_ids[prefix:])
        positions = mrope_positions(item, encoder.image_pad_id, encoder.video_pad_id)
        position_ids[:, row, :count] = torch.from_numpy(positions[:, prefix:])
        last[row] = count - 1
        shared = prefix > 0
        images.extend(item.images[item.query_images:] if shared else item.images)
        videos.extend(item.videos[item.query_videos:] if shared else item.videos)
    pin = torch.cuda.is_available()
    input_ids, position_ids, last = _pinned(input_ids), _pinned(position_ids), _pinned(last)
    return DocumentBatch(input_ids, position_ids, last, tuple(images), tuple(videos),
                         stacked_visuals(images, pin), stacked_visuals(videos, pin))


def _pinned(tensor: torch.Tensor) -> torch.Tensor:
    """Page-locked where CUDA is present, so that a copy to the GPU does not wait for it."""
    return tensor.pin_memory() if torch.cuda.is_available() else tensor


def _to_device(batch: DocumentBatch, device: torch.device) -> DocumentBatch:
    return DocumentBatch(
        batch.input_ids.to(device, non_blocking=True),
        batch.position_ids.to(device, non_blocking=True),
        batch.last.to(device, non_blocking=True),
        batch.images,
        batch.videos,
        None if batch.image_pixels is None else batch.image_pixels.to(device, non_blocking=True),
        None if batch.video_pixels is None else batch.video_pixels.to(device, non_blocking=True),
    )


def _prefix_forward(model: Any, direction: torch.Tensor, encoder: PairEncoder,
                    kernels: SharedKernels | None = None) -> PrefixForward | None:
    """The prefix-reusing path, when the whole model sits on one device and has the expected layout."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map and len(set(device_map.values())) > 1:
        return None
    try:
        return PrefixForward(model.model, direction, encoder.image_pad_id, encoder.video_pad_id, encoder.pad_id,
                             kernels)
    except (AttributeError, ImportError):
        return None


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
