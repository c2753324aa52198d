"""Prefix-reusing forward pass of the Qwen3-VL text decoder (our own layer loop, the model's weights).

Every document of one request shares the tokens system + instruction + query (the prefix). They
run once (batch 1); their keys and values are kept per layer; then the documents run as one
right-padded batch whose tokens attend to [prefix keys | own keys] under a causal mask aligned
at the bottom right. Positions are the full-sequence M-RoPE positions (inputs.mrope_positions),
so every document token sees exactly what it sees in a full forward pass. Only the last layer's
last position is normed and scored. fp32 scores equal HF's full forward within float rounding
(tests/test_qwen_fastpath.py); the math per layer is HF Qwen3VLTextDecoderLayer's.

Vision: images and videos of a side run through the model's own vision tower
(get_image_features / get_video_features), merged and deep-stacked as HF does.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from reranker.models.qwen3vl.vision import VisualInput, normalize


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3VLTextRMSNorm's math: float32 statistics, cast back, then the weight."""
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual add and the next norm (one fused kernel when compiled)."""
    y = x + delta
    return y, rms_norm(y, weight, eps)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def qk_norm_rope(q_lin: torch.Tensor, k_lin: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
                 cos: torch.Tensor, sin: torch.Tensor, eps: float, head_dim: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head q/k RMSNorm then M-RoPE (HF apply_rotary_pos_emb), as (B, heads, S, head_dim)."""
    rows, length = q_lin.shape[:2]
    q = rms_norm(q_lin.view(rows, length, -1, head_dim), q_weight, eps).transpose(1, 2)
    k = rms_norm(k_lin.view(rows, length, -1, head_dim), k_weight, eps).transpose(1, 2)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * c + _rotate_half(q) * s).contiguous(), (k * c + _rotate_half(k) * s).contiguous()


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(gate) * up


@dataclass(frozen=True)
class Ops:
    """The elementwise steps between the matrix products: eager, or compiled into fused kernels."""

    rms_norm: Callable[..., torch.Tensor] = rms_norm
    add_rms_norm: Callable[..., tuple[torch.Tensor, torch.Tensor]] = add_rms_norm
    qk_norm_rope: Callable[..., tuple[torch.Tensor, torch.Tensor]] = qk_norm_rope
    silu_mul: Callable[..., torch.Tensor] = silu_mul


RECOMPILE_LIMIT = 64  # per function: (batch 1 | batch n) x dtypes x model sizes resident in one process


def compiled_ops() -> Ops:
    """torch.compile'd Ops. Dynamo keeps its compiled variants per function, shared by every
    loaded version; the default limit (8) is too low once two sizes and dtypes are resident."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    options = {"dynamic": True, "fullgraph": True}
    return Ops(*(torch.compile(fn, **options) for fn in (rms_norm, add_rms_norm, qk_norm_rope, silu_mul)))


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


class PrefixForward:
    """Runs prefix and document passes over a loaded Qwen3VLModel (`model.model`)."""

    def __init__(self, inner: Any, direction: torch.Tensor, image_pad_id: int, video_pad_id: int) -> None:
        self._inner = inner
        self._text = inner.language_model
        self._layers = list(self._text.layers)
        attn = self._layers[0].self_attn
        self._head_dim = attn.head_dim
        self._groups = attn.num_key_value_groups
        self._scaling = attn.scaling
        self._direction = direction
        self._image_pad_id = image_pad_id
        self._video_pad_id = video_pad_id
        self.device = self._text.embed_tokens.weight.device
        self.ops = Ops()
        # Documents after a prefix: K/V written into reused buffers and GQA by folding the query
        # groups (no repeat_kv, no concatenation); False: the earlier concatenate + repeat path.
        # Off by default until measured on the GPU (bench/qwen_gpu.py --compare-before).
        self.fold_gqa = False
        self._compiling: threading.Thread | None = None
        from transformers.models.qwen3_vl import modeling_qwen3_vl

        self._apply_rope = modeling_qwen3_vl.apply_rotary_pos_emb

    def compile_in_background(self) -> threading.Event:
        """Compile the fused elementwise steps in a thread (first use compiles: seconds); the eager
        ones serve meanwhile and the compiled ones take over once built. CUDA only. The event
        is set when done (also when compiling failed: then the eager ones stay)."""
        done = threading.Event()
        if self.device.type != "cuda" or self._compiling is not None:
            done.set()
            return done

        def build() -> None:
            try:
                ops = compiled_ops()
                self._exercise(ops)
                self.ops = ops
            except Exception:  # no compiler toolchain or an unsupported case: eager stays
                pass
            finally:
                done.set()

        self._compiling = threading.Thread(target=build, name="qwen-compile", daemon=True)
        self._compiling.start()
        return done

    @torch.inference_mode()
    def _exercise(self, ops: Ops) -> None:
        """Call each compiled step with batch 1 and batch > 1 shapes (the prefix and document passes)."""
        layer = self._layers[0]
        attn = layer.self_attn
        hidden_size = layer.input_layernorm.weight.shape[0]
        dtype = layer.input_layernorm.weight.dtype
        for rows, length in ((1, 37), (3, 29)):
            x = torch.randn(rows, length, hidden_size, device=self.device, dtype=dtype)
            ops.rms_norm(x, layer.input_layernorm.weight, 1e-6)
            ops.add_rms_norm(x, x, layer.input_layernorm.weight, 1e-6)
            q = attn.q_proj(x)
            k = attn.k_proj(x)
            cos = torch.randn(rows, length, self._head_dim, device=self.device, dtype=dtype)
            ops.qk_norm_rope(q, k, attn.q_norm.weight, attn.k_norm.weight, cos, cos, 1e-6, self._head_dim)
            gate = layer.mlp.gate_proj(x)
            ops.silu_mul(gate, gate)
        torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def prefix(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
               images: Sequence[VisualInput], videos: Sequence[VisualInput]) -> PrefixState:
        """input_ids (1, L), position_ids (3, 1, L) on the device."""
        hidden, visual_mask, deepstack = self._embed(input_ids, images, videos)
        cos, sin = self._text.rotary_emb(hidden, position_ids)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for index, layer in enumerate(self._layers):
            hidden, key, value = self._layer(layer, hidden, cos, sin, None, None, causal=True)
            keys.append(key)
            values.append(value)
            hidden = _deepstack(hidden, visual_mask, deepstack, index)
        return PrefixState(keys, values, int(input_ids.shape[1]))

    @torch.inference_mode()
    def documents(self, batch: DocumentBatch, prefix: PrefixState | None) -> torch.Tensor:
        """Logits (yes - no), float32, one per row, left on the device (no synchronisation)."""
        input_ids, position_ids, last = batch.input_ids, batch.position_ids, batch.last
        rows, length = input_ids.shape
        hidden, visual_mask, deepstack = self._embed(input_ids, batch.images, batch.videos)
        cos, sin = self._text.rotary_emb(hidden, position_ids)
        past = prefix.length if prefix is not None else 0
        mask = None
        buffers = None
        if past:
            mask = torch.ones((length, past + length), dtype=torch.bool, device=self.device).tril(past)
        if prefix is not None and past and self.fold_gqa:
            # Grouped-query attention without repeating K/V: the query heads of one K/V head are
            # folded into the query length, so the mask is the causal mask tiled once per group.
            mask = mask.repeat(self._groups, 1) if self._groups > 1 and mask is not None else mask
            buffers = self._kv_buffers(prefix, rows, length, hidden.dtype)
        final = len(self._layers) - 1
        for index, layer in enumerate(self._layers):
            cached = (prefix.keys[index], prefix.values[index]) if prefix is not None else None
            if index == final:
                return self._last_layer(layer, hidden, cos, sin, cached, last)
            if buffers is not None and cached is not None and mask is not None:
                hidden = self._document_layer(layer, hidden, cos, sin, cached, buffers, mask)
            else:
                hidden, _, _ = self._layer(layer, hidden, cos, sin, cached, mask, causal=not past)
            hidden = _deepstack(hidden, visual_mask, deepstack, index)
        raise AssertionError("unreachable")

    def _kv_buffers(self, prefix: PrefixState, rows: int, length: int, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One (rows, kv_heads, past + length, head_dim) key and value buffer, reused by every layer."""
        heads, past = prefix.keys[0].shape[1], prefix.length
        shape = (rows, heads, past + length, self._head_dim)
        return (torch.empty(shape, dtype=dtype, device=self.device),
                torch.empty(shape, dtype=dtype, device=self.device))

    def _document_layer(self, layer: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        cached: tuple[torch.Tensor, torch.Tensor], buffers: tuple[torch.Tensor, torch.Tensor],
                        mask: torch.Tensor) -> torch.Tensor:
        """_layer for documents after a prefix: prefix and document K/V are written into the reused
        buffers (no concatenation), attention runs per K/V head with the query groups folded in."""
        ops = self.ops
        attn, mlp = layer.self_attn, layer.mlp
        eps = layer.input_layernorm.variance_epsilon
        rows, length = hidden.shape[:2]
        keys, values = buffers
        past = keys.shape[2] - length
        normed = ops.rms_norm(hidden, layer.input_layernorm.weight, eps)
        query, key = ops.qk_norm_rope(attn.q_proj(normed), attn.k_proj(normed), attn.q_norm.weight,
                                      attn.k_norm.weight, cos, sin, attn.q_norm.variance_epsilon, self._head_dim)
        keys[:, :, :past] = cached[0]
        values[:, :, :past] = cached[1]
        keys[:, :, past:] = key
        values[:, :, past:] = attn.v_proj(normed).view(rows, length, -1, self._head_dim).transpose(1, 2)
        heads = keys.shape[1]
        folded = query.reshape(rows, heads, self._groups * length, self._head_dim)
        attended = torch.nn.functional.scaled_dot_product_attention(
            folded, keys, values, attn_mask=mask, scale=self._scaling)
        # (rows, kv_heads, groups * length, d) -> (rows, length, kv_heads * groups * d): head h = kv * groups + g
        attended = attended.unflatten(2, (self._groups, length)).permute(0, 3, 1, 2, 4)
        delta = attn.o_proj(attended.reshape(rows, length, -1))
        hidden, normed = ops.add_rms_norm(hidden, delta, layer.post_attention_layernorm.weight, eps)
        return hidden + mlp.down_proj(ops.silu_mul(mlp.gate_proj(normed), mlp.up_proj(normed)))

    def _layer(self, layer: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               cached: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None, causal: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """HF Qwen3VLTextDecoderLayer.forward, with the elementwise steps from self.ops."""
        ops = self.ops
        attn, mlp = layer.self_attn, layer.mlp
        eps = layer.input_layernorm.variance_epsilon
        normed = ops.rms_norm(hidden, layer.input_layernorm.weight, eps)
        query, key = ops.qk_norm_rope(attn.q_proj(normed), attn.k_proj(normed), attn.q_norm.weight,
                                      attn.k_norm.weight, cos, sin, attn.q_norm.variance_epsilon, self._head_dim)
        value = attn.v_proj(normed).view(*normed.shape[:2], -1, self._head_dim).transpose(1, 2)
        keys, values = self._with_prefix(key, value, cached)
        attended = self._attend(query, keys, values, mask, causal)
        delta = attn.o_proj(attended.transpose(1, 2).reshape(*hidden.shape[:2], -1))
        hidden, normed = ops.add_rms_norm(hidden, delta, layer.post_attention_layernorm.weight, eps)
        hidden = hidden + mlp.down_proj(ops.silu_mul(mlp.gate_proj(normed), mlp.up_proj(normed)))
        return hidden, key, value

    def _last_layer(self, layer: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    cached: tuple[torch.Tensor, torch.Tensor] | None, last: torch.Tensor) -> torch.Tensor:
        """Only each row's last real position goes past attention: keys for all, one query per row."""
        rows = hidden.shape[0]
        pick = torch.arange(rows, device=hidden.device)
        key, value = self._kv(layer, layer.input_layernorm(hidden), cos, sin)
        residual = hidden[pick, last][:, None]
        normed = layer.input_layernorm(residual)
        query, _, _ = self._qkv(layer, normed, cos[pick, last][:, None], sin[pick, last][:, None], keys=False)
        keys, values = self._with_prefix(key, value, cached)
        past = keys.shape[2] - hidden.shape[1]
        visible = torch.arange(keys.shape[2], device=hidden.device)[None, :] <= (last[:, None] + past)
        if self.fold_gqa:
            heads = keys.shape[1]
            folded = query.reshape(rows, heads, self._groups, self._head_dim)  # one query per row: groups fold
            attended = torch.nn.functional.scaled_dot_product_attention(
                folded, keys, values, attn_mask=visible[:, None, None, :], scale=self._scaling
            ).reshape(rows, heads * self._groups, 1, self._head_dim)
        else:
            attended = self._attend(query, keys, values, visible[:, None, None, :], causal=False)
        out = residual + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(rows, 1, -1))
        out = out + layer.mlp(layer.post_attention_layernorm(out))
        final = self._text.norm(out[:, 0]).float()
        return final @ self._direction.to(final.device)

    def _qkv(self, layer: Any, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        attn = layer.self_attn
        shape = (*normed.shape[:2], -1, self._head_dim)
        query = attn.q_norm(attn.q_proj(normed).view(shape)).transpose(1, 2)
        if not keys:
            query, _ = self._apply_rope(query, query, cos, sin)
            return query, None, None
        key = attn.k_norm(attn.k_proj(normed).view(shape)).transpose(1, 2)
        value = attn.v_proj(normed).view(shape).transpose(1, 2)
        query, key = self._apply_rope(query, key, cos, sin)
        return query, key, value

    def _kv(self, layer: Any, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
        attn = layer.self_attn
        shape = (*normed.shape[:2], -1, self._head_dim)
        key = attn.k_norm(attn.k_proj(normed).view(shape)).transpose(1, 2)
        value = attn.v_proj(normed).view(shape).transpose(1, 2)
        key, _ = self._apply_rope(key, key, cos, sin)
        return key, value

    def _with_prefix(self, key: torch.Tensor, value: torch.Tensor,
                     cached: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        if cached is None:
            return key, value
        rows = key.shape[0]
        keys = torch.cat([cached[0].expand(rows, -1, -1, -1), key], dim=2)
        values = torch.cat([cached[1].expand(rows, -1, -1, -1), value], dim=2)
        return keys, values

    def _attend(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        if self._groups > 1:
            keys = keys.repeat_interleave(self._groups, dim=1)
            values = values.repeat_interleave(self._groups, dim=1)
        return torch.nn.functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, is_causal=causal and mask is None, scale=self._scaling
        )

    def _embed(self, input_ids: torch.Tensor, images: Sequence[VisualInput], videos: Sequence[VisualInput]
               ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
        """Token embeddings with vision features scattered in, the visual mask and deepstack features."""
        hidden = self._text.embed_tokens(input_ids)
        if not images and not videos:
            return hidden, None, None
        parts = []
        masks = []
        for visuals, pad_id, features in (
            (images, self._image_pad_id, self._inner.get_image_features),
            (videos, self._video_pad_id, self._inner.get_video_features),
        ):
            if not visuals:
                continue
            embeds, deep = _visual_features(features, visuals, self.device)
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


def _visual_features(features: Any, visuals: Sequence[VisualInput], device: torch.device
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    import numpy as np

    pixels = torch.from_numpy(np.concatenate([v.pixel_values for v in visuals])).to(device, non_blocking=True)
    grid = torch.tensor([v.grid_thw for v in visuals], dtype=torch.long, device=device)
    output = features(normalize(pixels), grid)
    if isinstance(output, tuple):  # transformers 4.57: (embeds, deepstack)
        embeds, deep = output[0], output[1]
    else:
        embeds, deep = output.pooler_output, output.deepstack_features
    embeds = torch.cat(list(embeds)) if isinstance(embeds, (list, tuple)) else embeds
    deep = [torch.cat(list(d)) if isinstance(d, (list, tuple)) else d for d in deep]
    return embeds, deep


def _deepstack(hidden: torch.Tensor, mask: torch.Tensor | None, deepstack: list[torch.Tensor] | None,
               index: int) -> torch.Tensor:
    if deepstack is None or mask is None or index >= len(deepstack):
        return hidden
    hidden = hidden.clone()
    hidden[mask] = hidden[mask] + deepstack[index].to(hidden.dtype)
    return hidden
