"""Prefix-reusing forward pass of the Qwen3-VL text decoder (our own layer loop, the model's weights).

Every document of one request shares the tokens system + instruction + query (the prefix). They
run once (batch 1); their keys and values are kept per layer; then the documents run as one
right-padded batch whose tokens attend to [prefix keys | own keys] under a causal mask aligned
at the bottom right. Positions are the full-sequence M-RoPE positions (inputs.mrope_positions),
so every document token sees exactly what it sees in a full forward pass. Only the last layer's
last position is normed and scored. fp32 scores equal HF's full forward within float rounding
(tests/test_qwen_fastpath.py); the math per layer is HF Qwen3VLTextDecoderLayer's.

Speed on a GPU: a decoder layer is one function of its weights (layers.causal_layer,
document_layer), torch.compile'd once per device for all versions (kernels.SharedKernels; eager
until then); a text-only prefix
replays a CUDA graph of its length bucket (PrefixGraphs), since a batch-1 pass is bound by
launching kernels. Both keep the fp32 scores within 1e-5 of one-by-one HF scoring
(tests/gpu/test_qwen_cuda.py on the device machine).

Vision: images and videos of a side run through our pass of the model's vision tower
(visiontower.VisionTower: batched attention over equal-size frames, compiled blocks; HF's
get_image_features / get_video_features when the layout is unknown), merged and deep-stacked as
HF does.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from reranker.models.qwen3vl.kernels import Ops, SharedKernels, compiled_ops
from reranker.models.qwen3vl.layers import causal_layer, document_layer, layer_weights
from reranker.models.qwen3vl.vision import VisualInput, normalize
from reranker.models.qwen3vl.visiontower import VisionTower, device_patches, stacked_visuals

__all__ = ["DocumentBatch", "Ops", "PrefixForward", "PrefixState", "causal_layer", "compiled_ops", "document_layer"]


@dataclass
class PrefixState:
    """Keys and values (post-RoPE) of the shared prefix, one (1, kv_heads, L, head_dim) pair per layer."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int


@dataclass
class DocumentBatch:
    """Right-padded document parts (tokens after the prefix), ready for the device."""

    input_ids: torch.Tensor  # (B, S) long
    position_ids: torch.Tensor  # (3, B, S) long
    last: torch.Tensor  # (B,) long: index of each row's last real token
    images: tuple[VisualInput, ...]
    videos: tuple[VisualInput, ...]
    # The images' and videos' uint8 bytes back to back (visiontower.stacked_visuals; pinned when
    # built for a GPU), so that the scoring thread only starts a non-blocking copy; None: built when needed.
    image_pixels: torch.Tensor | None = None
    video_pixels: torch.Tensor | None = None


PREFIX_BUCKETS = (32, 64, 128, 256, 512)  # prefix lengths (tokens) served by CUDA graphs; longer: eager


class PrefixGraphs:
    """CUDA graphs of the text-only prefix pass, one per length bucket, captured on first use.

    The prefix is right-padded to its bucket: attention is causal, so the real tokens' keys and
    values do not depend on the padding, and only those are copied out. Captured lazily on the
    thread that scores (never concurrently with its own replays); buckets share one memory pool.
    """

    def __init__(self, forward: Callable[..., PrefixState], pad_id: int, device: torch.device,
                 buckets: Sequence[int] = PREFIX_BUCKETS) -> None:
        self._forward = forward
        self._pad_id = pad_id
        self._device = device
        self.buckets = tuple(sorted(buckets))
        self._graphs: dict[int, tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._pool: Any = None
        self._lock = threading.Lock()
        self.failed: str = ""  # why capturing failed (then prefixes run eagerly)

    def run(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> PrefixState | None:
        """The prefix state, or None when no bucket holds this length (or capturing failed)."""
        length = int(input_ids.shape[1])
        bucket = next((b for b in self.buckets if b >= length), None)
        if bucket is None or self.failed:
            return None
        with self._lock:
            entry = self._graphs.get(bucket)
            if entry is None:
                try:
                    entry = self._capture(bucket)
                except Exception as exc:  # noqa: BLE001  an unsupported case: eager serves, same results
                    self.failed = f"{type(exc).__name__}: {exc}"
                    return None
            graph, ids, positions, stacked = entry
            ids[:, :length].copy_(input_ids)
            positions[:, :, :length].copy_(position_ids)
            graph.replay()
            kv = stacked[:, :, :, :length].clone()  # (2, layers, kv_heads, length, head_dim)
        return PrefixState(list(kv[0, :, None]), list(kv[1, :, None]), length)

    def _capture(self, bucket: int) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = torch.full((1, bucket), self._pad_id, dtype=torch.long, device=self._device)
        positions = torch.arange(bucket, device=self._device).view(1, 1, bucket).repeat(3, 1, 1)
        stream = torch.cuda.Stream(self._device)
        stream.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(stream):
            self._forward(ids, positions, (), ())  # allocations and library handles before capture
        torch.cuda.current_stream(self._device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=stream, capture_error_mode="thread_local"):
            state = self._forward(ids, positions, (), ())
            stacked = torch.stack([torch.cat(state.keys), torch.cat(state.values)])
        self._graphs[bucket] = (graph, ids, positions, stacked)
        return self._graphs[bucket]


class PrefixForward:
    """Runs prefix and document passes over a loaded Qwen3VLModel (`model.model`)."""

    def __init__(self, inner: Any, direction: torch.Tensor, image_pad_id: int, video_pad_id: int,
                 pad_id: int = 0, kernels: SharedKernels | None = None) -> None:
        self._inner = inner
        self._text = inner.language_model
        self._layers = list(self._text.layers)
        self._weights = [layer_weights(layer) for layer in self._layers]
        attn = self._layers[0].self_attn
        self._head_dim = attn.head_dim
        self._scaling = attn.scaling
        self._eps = self._layers[0].input_layernorm.variance_epsilon
        if attn.q_norm.variance_epsilon != self._eps:
            raise AttributeError("q/k norm epsilon differs from the layer norms': unexpected layout")
        self._direction = direction
        self._image_pad_id = image_pad_id
        self._video_pad_id = video_pad_id
        self.device = self._text.embed_tokens.weight.device
        self.kernels = kernels if kernels is not None else SharedKernels()
        self.graphs = PrefixGraphs(self._prefix_pass, pad_id, self.device) if self.device.type == "cuda" else None
        try:
            self.vision: VisionTower | None = VisionTower(inner.visual)
        except AttributeError:  # a vision layout we do not know: HF's tower serves
            self.vision = None
        from transformers.models.qwen3_vl import modeling_qwen3_vl

        self._apply_rope = modeling_qwen3_vl.apply_rotary_pos_emb

    @property
    def ops(self) -> Ops:
        """The kernels in use now (shared by every version on this device)."""
        return self.kernels.ops

    @property
    def fused(self) -> bool:
        """True once the compiled layers serve."""
        return self.kernels.fused

    def compile_in_background(self) -> tuple[threading.Event, bool]:
        """Have the shared kernels compiled (first use compiles: seconds) in a thread; the eager
        ones serve meanwhile. CUDA only. Returns the event set when done (also when compiling
        failed: then the eager ones stay) and whether this call started the compile."""
        if self.device.type != "cuda":
            done = threading.Event()
            done.set()
            return done, False
        started = self.kernels.start(self._exercise)
        return self.kernels.done, started

    @torch.inference_mode()
    def _exercise(self, ops: Ops) -> None:
        """Call each compiled layer with the shapes serving meets (batch 1 and batch > 1, with
        and without a prefix), so that no request waits for a compile."""
        weights = self._weights[0]
        hidden_size = weights[0].shape[0]
        dtype = weights[0].dtype
        key = value = None
        for rows, length in ((1, 37), (3, 29)):
            x = torch.randn(rows, length, hidden_size, device=self.device, dtype=dtype)
            cos = torch.randn(rows, length, self._head_dim, device=self.device, dtype=dtype)
            _, key, value = ops.causal_layer(x, cos, cos, weights, self._eps, self._head_dim, self._scaling)
        assert key is not None and value is not None
        past = key[:1, :, :11]
        for rows, length in ((1, 23), (3, 29)):
            x = torch.randn(rows, length, hidden_size, device=self.device, dtype=dtype)
            cos = torch.randn(rows, length, self._head_dim, device=self.device, dtype=dtype)
            mask = torch.ones((length, 11 + length), dtype=torch.bool, device=self.device).tril(11)
            ops.document_layer(x, cos, cos, weights, past, past, mask, self._eps, self._head_dim, self._scaling)
        if self.vision is not None:
            for grids in (((1, 4, 4),), ((1, 4, 6), (1, 4, 6))):
                tokens = sum(t * h * w for t, h, w in grids)
                patches = torch.randint(0, 256, (tokens, 1536), dtype=torch.uint8, device=self.device)
                self.vision.features(patches, grids, ops.vision)
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def prefix(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
               images: Sequence[VisualInput], videos: Sequence[VisualInput]) -> PrefixState:
        """input_ids (1, L), position_ids (3, 1, L) on the device. A text-only prefix replays a
        CUDA graph of its length bucket once the compiled layers serve (batch 1 is bound by
        launching kernels, not by the GPU); otherwise the layers run one by one."""
        if self.graphs is not None and self.fused and not images and not videos:
            state = self.graphs.run(input_ids, position_ids)
            if state is not None:
                return state
        return self._prefix_pass(input_ids, position_ids, images, videos)

    def _prefix_pass(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                     images: Sequence[VisualInput], videos: Sequence[VisualInput]) -> PrefixState:
        hidden, visual_mask, deepstack = self._embed(input_ids, images, videos)
        cos, sin = self._text.rotary_emb(hidden, position_ids)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        layer_fn = self.ops.causal_layer
        for index, weights in enumerate(self._weights):
            hidden, key, value = layer_fn(hidden, cos, sin, weights, self._eps, self._head_dim, self._scaling)
            keys.append(key)
            values.append(value)
            hidden = _deepstack(hidden, visual_mask, deepstack, index)
        return PrefixState(keys, values, int(input_ids.shape[1]))

    @torch.inference_mode()
    def documents(self, batch: DocumentBatch, prefix: PrefixState | None) -> torch.Tensor:
        """Logits (yes - no), float32, one per row, left on the device (no synchronisation)."""
        input_ids, position_ids, last = batch.input_ids, batch.position_ids, batch.last
        length = input_ids.shape[1]
        hidden, visual_mask, deepstack = self._embed(input_ids, batch.images, batch.videos,
                                                     (batch.image_pixels, batch.video_pixels))
        cos, sin = self._text.rotary_emb(hidden, position_ids)
        past = prefix.length if prefix is not None else 0
        mask = None
        if prefix is not None and past:
            mask = torch.ones((length, past + length), dtype=torch.bool, device=self.device).tril(past)
        ops, eps, head_dim, scaling = self.ops, self._eps, self._head_dim, self._scaling
        final = len(self._layers) - 1
        for index, weights in enumerate(self._weights):
            cached = (prefix.keys[index], prefix.values[index]) if prefix is not None and past else None
            if index == final:
                return self._last_layer(self._layers[index], hidden, cos, sin, cached, last)
            if cached is not None and mask is not None:
                hidden = ops.document_layer(hidden, cos, sin, weights, cached[0], cached[1], mask, eps, head_dim,
                                            scaling)
            else:
                hidden = ops.causal_layer(hidden, cos, sin, weights, eps, head_dim, scaling)[0]
            hidden = _deepstack(hidden, visual_mask, deepstack, index)
        raise AssertionError("unreachable")

    def _last_layer(self, layer: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    cached: tuple[torch.Tensor, torch.Tensor] | None, last: torch.Tensor) -> torch.Tensor:
        """Only each row's last real position goes past attention: keys for all, one query per row."""
        rows = hidden.shape[0]
        pick = torch.arange(rows, device=hidden.device)
        key, value = self._kv(layer, layer.input_layernorm(hidden), cos, sin)
        residual = hidden[pick, last][:, None]
        normed = layer.input_layernorm(residual)
        query = self._query(layer, normed, cos[pick, last][:, None], sin[pick, last][:, None])
        if cached is not None:
            key = torch.cat([cached[0].expand(rows, -1, -1, -1), key], dim=2)
            value = torch.cat([cached[1].expand(rows, -1, -1, -1), value], dim=2)
        past = key.shape[2] - hidden.shape[1]
        visible = torch.arange(key.shape[2], device=hidden.device)[None, :] <= (last[:, None] + past)
        attended = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=visible[:, None, None, :], scale=self._scaling, enable_gqa=True)
        out = residual + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(rows, 1, -1))
        out = out + layer.mlp(layer.post_attention_layernorm(out))
        final = self._text.norm(out[:, 0]).float()
        return final @ self._direction.to(final.device)

    def _query(self, layer: Any, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        query = attn.q_norm(attn.q_proj(normed).view(*normed.shape[:2], -1, self._head_dim)).transpose(1, 2)
        query, _ = self._apply_rope(query, query, cos, sin)
        return query

    def _kv(self, layer: Any, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
        attn = layer.self_attn
        shape = (*normed.shape[:2], -1, self._head_dim)
        key = attn.k_norm(attn.k_proj(normed).view(shape)).transpose(1, 2)
        value = attn.v_proj(normed).view(shape).transpose(1, 2)
        key, _ = self._apply_rope(key, key, cos, sin)
        return key, value

    def _embed(self, input_ids: torch.Tensor, images: Sequence[VisualInput], videos: Sequence[VisualInput],
               pixels: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
               ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
        """Token embeddings with vision features scattered in, the visual mask and deepstack features."""
        hidden = self._text.embed_tokens(input_ids)
        if not images and not videos:
            return hidden, None, None
        parts = []
        masks = []
        for visuals, pad_id, features, stacked in (
            (images, self._image_pad_id, self._inner.get_image_features, pixels[0]),
            (videos, self._video_pad_id, self._inner.get_video_features, pixels[1]),
        ):
            if not visuals:
                continue
            if stacked is None:
                stacked = stacked_visuals(visuals, pin=False)
                assert stacked is not None
            patches = device_patches(stacked.to(self.device, non_blocking=True), visuals)
            if self.vision is not None:
                embeds, deep = self.vision.features(patches, [v.grid_thw for v in visuals], self.ops.vision)
            else:
                embeds, deep = _visual_features(features, visuals, patches)
            mask = input_ids == pad_id
            hidden = hidden.masked_scatter(mask[..., None], embeds.to(hidden.dtype))
            parts.append((mask, deep))
            masks.append(mask)
        visual_mask = masks[0] if len(masks) == 1 else masks[0] | masks[1]
        if len(parts) == 1:
            return hidden, visual_mask, parts[0][1]
        (image_mask, image_deep), (video_mask, video_deep) = parts
        joint_image = image_mask[visual_mask]
        joint_video = video_mask[visual_mask]
        deepstack = []
        for image_feat, video_feat in zip(image_deep, video_deep):
            joint = image_feat.new_zeros(int(visual_mask.sum()), image_feat.shape[-1])
            joint[joint_image] = image_feat
            joint[joint_video] = video_feat
            deepstack.append(joint)
        return hidden, visual_mask, deepstack


def _visual_features(features: Any, visuals: Sequence[VisualInput], patches: torch.Tensor
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """HF's tower (get_image_features / get_video_features) on uint8 patches already on the device."""
    grid = torch.tensor([v.grid_thw for v in visuals], dtype=torch.long, device=patches.device)
    output = features(normalize(patches), grid)
    if isinstance(output, tuple):  # transformers 4.57: (embeds, deepstack)
        embeds, deep = output[0], output[1]
    else:
        embeds, deep = output.pooler_output, output.deepstack_features
    embeds = torch.cat(list(embeds)) if isinstance(embeds, (list, tuple)) else embeds
    deep = [torch.cat(list(d)) if isinstance(d, (list, tuple)) else d for d in deep]
    return embeds, deep


def _deepstack(hidden: torch.Tensor, mask: torch.Tensor | None, deepstack: list[torch.Tensor] | None,
               index: int) -> torch.Tensor:
    """hidden with deepstack[index] added at the visual positions (mask). The features are
    scattered into a zero tensor and added everywhere (x + 0 is x: the values are those of
    adding at the masked positions only): boolean indexing would wait for the GPU (nonzero)."""
    if deepstack is None or mask is None or index >= len(deepstack):
        return hidden
    addend = torch.zeros_like(hidden).masked_scatter(mask[..., None], deepstack[index].to(hidden.dtype))
    return hidden + addend
