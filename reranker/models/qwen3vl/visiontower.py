"""Our forward pass of the Qwen3-VL vision tower (the model's own weights), for the GPU fast path.

The math is HF Qwen3VLVisionModel's: patch embedding (a Conv3d whose kernel equals its stride,
i.e. one matrix product per patch), the learned 2-D position table resampled bilinearly
(align_corners) to each grid, 2-D rotary embedding applied in float32, pre-norm blocks
(LayerNorm, qkv, attention within each frame, proj, LayerNorm, GELU-tanh MLP), the deepstack
mergers after their blocks and the final merger. What differs is how it runs:

- attention: HF calls SDPA once per image (or per video frame); here the frames are ordered by
  size and every run of equal-size frames is one batched SDPA call (16 images: 1 call, not 16);
- the position embedding and rotary tables depend only on a grid's (h, w): computed once per
  (h, w) and kept (a small LRU per tower);
- each block is two functions of its weights (before and after attention) that torch.compile
  fuses (VisionOps; eager until compiled), and uint8 patches are normalised inside the patch
  embedding;
- stills arrive as resized uint8 frames and are cut into patches on the device (device_patches):
  the CPU no longer copies each image twice to patchify it, and half the bytes travel.

Float32 results equal HF's get_image_features / get_video_features within float rounding
(tests/test_qwen_visiontower.py).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from reranker.models.qwen3vl.vision import (
    MERGE_SIZE, PATCH_DIM, PATCH_SIZE, TEMPORAL_PATCH, VisualInput, patchify_stills,
)

# A vision block's weights, in this order: norm1 weight, bias, qkv weight, bias, proj weight, bias,
# norm2 weight, bias, fc1 weight, bias, fc2 weight, bias.
BlockWeights = tuple
GRID_CACHE = 64  # (h, w) grids whose position and rotary tables are kept per tower


def block_weights(block: Any) -> BlockWeights:
    attn, mlp = block.attn, block.mlp
    return (block.norm1.weight, block.norm1.bias, attn.qkv.weight, attn.qkv.bias, attn.proj.weight,
            attn.proj.bias, block.norm2.weight, block.norm2.bias, mlp.linear_fc1.weight, mlp.linear_fc1.bias,
            mlp.linear_fc2.weight, mlp.linear_fc2.bias)


def patch_embed(patches: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, position: torch.Tensor
                ) -> torch.Tensor:
    """uint8 patches (N, 1536) -> (x - 127.5) / 127.5 in float32, cast to the weights' dtype, the
    patch projection (the Conv3d as a matrix product) plus the position embedding."""
    pixels = ((patches.to(torch.float32) - 127.5) / 127.5).to(weight.dtype)
    return F.linear(pixels, weight, bias) + position


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF's x * cat(cos, cos) + rotate_half(x) * cat(sin, sin) in float32, written per half (the
    same operations, so the same bits) with half-width tables: half the table reads, no concatenated
    rotation."""
    half = x.shape[-1] // 2
    xf = x.float()
    first, second = xf[..., :half], xf[..., half:]
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1).to(x.dtype)


def attention_inputs(hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: BlockWeights, heads: int,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """norm1, qkv, rotary embedding in float32 (HF apply_rotary_pos_emb_vision): q, k, v as
    (N, heads, head_dim). cos, sin: (N, head_dim / 2) float32 (each half of HF's tables)."""
    tokens, dim = hidden.shape
    normed = F.layer_norm(hidden, (dim,), w[0], w[1], eps)
    q, k, v = F.linear(normed, w[2], w[3]).view(tokens, 3, heads, -1).unbind(1)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return _rotate(q, c, s), _rotate(k, c, s), v


def block_finish(hidden: torch.Tensor, attended: torch.Tensor, w: BlockWeights, eps: float,
                 approximate: str) -> torch.Tensor:
    """proj, residual, norm2, MLP (GELU), residual. attended: (N, dim)."""
    hidden = hidden + F.linear(attended, w[4], w[5])
    normed = F.layer_norm(hidden, (hidden.shape[-1],), w[6], w[7], eps)
    return hidden + F.linear(F.gelu(F.linear(normed, w[8], w[9]), approximate=approximate), w[10], w[11])


@dataclass(frozen=True)
class VisionOps:
    """The tower's fusable pieces, eager or torch.compile'd (see fastpath.compiled_ops)."""

    patch_embed: Callable[..., torch.Tensor] = patch_embed
    attention_inputs: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = attention_inputs
    block_finish: Callable[..., torch.Tensor] = block_finish


def compile_vision_ops(options: dict[str, Any]) -> VisionOps:
    compiled: list[Any] = [torch.compile(fn, **options) for fn in (patch_embed, attention_inputs, block_finish)]
    return VisionOps(*compiled)


class VisionTower:
    """Runs a loaded Qwen3VLVisionModel (`model.model.visual`) our way; see the module docstring.
    Raises AttributeError on a layout it does not know (the caller then keeps HF's tower)."""

    def __init__(self, visual: Any) -> None:
        config = visual.config
        act = getattr(config, "hidden_act", "")
        if act == "gelu_pytorch_tanh":
            self._approximate = "tanh"
        elif act == "gelu":
            self._approximate = "none"
        else:
            raise AttributeError(f"vision activation {act!r} is not handled")
        if visual.patch_embed.temporal_patch_size != TEMPORAL_PATCH or visual.patch_embed.patch_size != PATCH_SIZE:
            raise AttributeError("unexpected vision patch layout")
        if visual.spatial_merge_size != MERGE_SIZE:
            raise AttributeError("unexpected spatial merge size")
        blocks = list(visual.blocks)
        self._weights = [block_weights(block) for block in blocks]
        self._heads = blocks[0].attn.num_heads
        self._head_dim = blocks[0].attn.head_dim
        self._scaling = blocks[0].attn.scaling
        self._eps = blocks[0].norm1.eps
        if any(b.norm1.eps != self._eps or b.norm2.eps != self._eps for b in blocks):
            raise AttributeError("vision norm epsilons differ between blocks")
        conv = visual.patch_embed.proj
        self._patch_weight = conv.weight.reshape(conv.weight.shape[0], PATCH_DIM)
        self._patch_bias = conv.bias
        self._table = visual.pos_embed.weight
        self._side = int(visual.num_grid_per_side)
        self._inv_freq = visual.rotary_pos_emb.inv_freq
        self._deepstack = {index: n for n, index in enumerate(visual.deepstack_visual_indexes)}
        self._deepstack_mergers = list(visual.deepstack_merger_list)
        self._merger = visual.merger
        self._grids: OrderedDict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def dtype(self) -> torch.dtype:
        return self._patch_weight.dtype

    @torch.inference_mode()
    def features(self, patches: torch.Tensor, grids: Sequence[tuple[int, int, int]], ops: VisionOps
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """patches: uint8 (sum t*h*w, 1536) on the tower's device, in the order of grids. Returns the
        merged embeddings (sum t*h*w/4, out) and the deepstack features, in the same order."""
        lengths = [t * h * w for t, h, w in grids]
        order = sorted(range(len(grids)), key=lambda i: (grids[i][1] * grids[i][2], i))
        permuted = order != list(range(len(grids)))
        if permuted:
            starts = [0]
            for length in lengths:
                starts.append(starts[-1] + length)
            index = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in order]).to(patches.device)
            patches = patches.index_select(0, index)
        ordered = [grids[i] for i in order]
        position, cos, sin = self._tables(ordered, patches.device)
        hidden = ops.patch_embed(patches, self._patch_weight, self._patch_bias, position)
        runs = _runs([h * w for t, h, w in ordered for _ in range(t)])
        deep: list[torch.Tensor] = []
        for number, weights in enumerate(self._weights):
            q, k, v = ops.attention_inputs(hidden, cos, sin, weights, self._heads, self._eps)
            attended = self._attend(q, k, v, runs)
            hidden = ops.block_finish(hidden, attended, weights, self._eps, self._approximate)
            if number in self._deepstack:
                deep.append(self._deepstack_mergers[self._deepstack[number]](hidden))
        merged = self._merger(hidden)
        if permuted:
            merged, deep = _restore(merged, deep, ordered, order)
        return merged, deep

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, runs: list[tuple[int, int, int]]
                ) -> torch.Tensor:
        """Attention within each unit: one SDPA call per run of equal-size units. (N, heads*head_dim)."""
        outputs = []
        for start, count, length in runs:
            end = start + count * length

            def batched(x: torch.Tensor, start: int = start, end: int = end, count: int = count,
                        length: int = length) -> torch.Tensor:
                return x[start:end].view(count, length, self._heads, self._head_dim).transpose(1, 2)

            out = F.scaled_dot_product_attention(batched(q), batched(k), batched(v), scale=self._scaling)
            outputs.append(out.transpose(1, 2).reshape(count * length, -1))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _tables(self, grids: Sequence[tuple[int, int, int]], device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Position embedding (model dtype) and rotary cos/sin (float32, half width) for every patch,
        in merge order."""
        parts = [self._grid_tables(h, w, device) for _, h, w in grids]
        repeats = [t for t, _, _ in grids]

        def joined(n: int) -> torch.Tensor:
            pieces = [part[n] if t == 1 else part[n].repeat(t, 1) for part, t in zip(parts, repeats)]
            return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

        return joined(0), joined(1), joined(2)

    def _grid_tables(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (h, w)
        cached = self._grids.get(key)
        if cached is not None:
            self._grids.move_to_end(key)
            return cached
        side, dim = self._side, self._table.shape[1]
        table = self._table.float().view(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=True)[0]  # (dim, h, w)
        position = _merge_order(grid.permute(1, 2, 0), h, w).to(self.dtype)
        rows = torch.arange(h, device=device).view(h, 1).expand(h, w)
        cols = torch.arange(w, device=device).view(1, w).expand(h, w)
        inv_freq = self._inv_freq.to(device=device, dtype=torch.float32)
        freqs = torch.cat([_merge_order(rows[..., None].float(), h, w) * inv_freq,
                           _merge_order(cols[..., None].float(), h, w) * inv_freq], dim=-1)
        entry = (position.contiguous(), freqs.cos(), freqs.sin())  # HF's tables are these, twice over
        self._grids[key] = entry
        if len(self._grids) > GRID_CACHE:
            self._grids.popitem(last=False)
        return entry


def _merge_order(values: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h, w, C) -> (h*w, C) in the tower's patch order: 2x2 merge blocks row by row."""
    channels = values.shape[-1]
    blocks = values.reshape(h // MERGE_SIZE, MERGE_SIZE, w // MERGE_SIZE, MERGE_SIZE, channels)
    return blocks.permute(0, 2, 1, 3, 4).reshape(h * w, channels)


def _runs(unit_lengths: Sequence[int]) -> list[tuple[int, int, int]]:
    """Consecutive units of equal length as (first token, units, tokens per unit)."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    for length in unit_lengths:
        if runs and runs[-1][2] == length:
            first, count, _ = runs[-1]
            runs[-1] = (first, count + 1, length)
        else:
            runs.append((start, 1, length))
        start += length
    return runs


def _restore(merged: torch.Tensor, deep: list[torch.Tensor], ordered: Sequence[tuple[int, int, int]],
             order: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Undo the size ordering on the merged tokens (t*h*w/4 per visual)."""
    sizes = [t * h * w // (MERGE_SIZE * MERGE_SIZE) for t, h, w in ordered]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    position = {original: n for n, original in enumerate(order)}
    index = torch.cat([torch.arange(starts[position[i]], starts[position[i] + 1]) for i in range(len(order))])
    index = index.to(merged.device)
    return merged.index_select(0, index), [d.index_select(0, index) for d in deep]


def stacked_visuals(visuals: Sequence[VisualInput], pin: bool) -> torch.Tensor | None:
    """The uint8 bytes of visuals, flat and back to back (stills as their resized frame, videos as
    patches), pinned for a non-blocking copy when the target is a GPU."""
    if not visuals:
        return None
    import numpy as np

    flat = torch.from_numpy(np.concatenate([v.data.reshape(-1) for v in visuals]))
    return flat.pin_memory() if pin else flat


def device_patches(flat: torch.Tensor, visuals: Sequence[VisualInput]) -> torch.Tensor:
    """stacked_visuals() on the device -> uint8 patches (sum t*h*w, 1536) in HF order: a still's
    frame is cut into 16x16 patches and repeated over the temporal patch, here (vision.patchify_stills:
    pure data movement, the same bytes as the CPU path). Consecutive stills of one size are cut in one call."""
    pieces: list[torch.Tensor] = []
    offset = 0
    index = 0
    while index < len(visuals):
        visual = visuals[index]
        if not visual.still:
            size = visual.data.size
            pieces.append(flat[offset:offset + size].view(-1, PATCH_DIM))
            offset += size
            index += 1
            continue
        shape = visual.data.shape
        end = index
        while end < len(visuals) and visuals[end].still and visuals[end].data.shape == shape:
            end += 1
        count = end - index
        size = count * visual.data.size
        pieces.append(patchify_stills(flat[offset:offset + size].view(count, *shape)))
        offset += size
        index = end
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)
