"""One Qwen3-VL text decoder layer as a function of its weights (HF Qwen3VLTextDecoderLayer's math):
over whole right-padded causal sequences (causal_layer) and for documents after a shared prefix
(document_layer). Pure functions of (inputs, weights), so that one torch.compile'd graph serves
every layer of every loaded version (kernels.py)."""
from __future__ import annotations

from typing import Any

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3VLTextRMSNorm's math: float32 statistics, cast back, then the weight."""
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


# A decoder layer's weights, in this order (biases None when the checkpoint has none):
# input norm, q, q bias, k, k bias, v, v bias, q norm, k norm, o, o bias, post-attention norm, gate, up, down.
LayerWeights = tuple


def layer_weights(layer: Any) -> LayerWeights:
    attn, mlp = layer.self_attn, layer.mlp
    return (layer.input_layernorm.weight, attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight,
            attn.k_proj.bias, attn.v_proj.weight, attn.v_proj.bias, attn.q_norm.weight, attn.k_norm.weight,
            attn.o_proj.weight, attn.o_proj.bias, layer.post_attention_layernorm.weight,
            mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)


def _project(hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: LayerWeights, eps: float,
             head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input norm, q/k/v projections, per-head q/k RMSNorm, M-RoPE (HF apply_rotary_pos_emb):
    query, key and value as (B, heads, S, head_dim)."""
    linear = torch.nn.functional.linear
    rows, length = hidden.shape[:2]
    normed = rms_norm(hidden, w[0], eps)
    q = rms_norm(linear(normed, w[1], w[2]).view(rows, length, -1, head_dim), w[7], eps).transpose(1, 2)
    k = rms_norm(linear(normed, w[3], w[4]).view(rows, length, -1, head_dim), w[8], eps).transpose(1, 2)
    v = linear(normed, w[5], w[6]).view(rows, length, -1, head_dim).transpose(1, 2)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s, v


def _finish(hidden: torch.Tensor, attended: torch.Tensor, w: LayerWeights, eps: float) -> torch.Tensor:
    """o projection, residual, post-attention norm, SwiGLU MLP, residual."""
    linear = torch.nn.functional.linear
    rows, length = hidden.shape[:2]
    hidden = hidden + linear(attended.transpose(1, 2).reshape(rows, length, -1), w[9], w[10])
    normed = rms_norm(hidden, w[11], eps)
    return hidden + linear(torch.nn.functional.silu(linear(normed, w[12])) * linear(normed, w[13]), w[14])


def causal_layer(hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: LayerWeights, eps: float,
                 head_dim: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HF Qwen3VLTextDecoderLayer over whole right-padded sequences (causal): the new hidden state
    and this layer's post-RoPE keys and values. Grouped-query attention without repeating K/V."""
    query, key, value = _project(hidden, cos, sin, w, eps, head_dim)
    attended = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, is_causal=True, scale=scaling, enable_gqa=True)
    return _finish(hidden, attended, w, eps), key, value


def document_layer(hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: LayerWeights,
                   past_key: torch.Tensor, past_value: torch.Tensor, mask: torch.Tensor, eps: float,
                   head_dim: int, scaling: float) -> torch.Tensor:
    """The same layer for documents after a shared prefix: every row attends to [prefix | own]
    keys under `mask` (causal, aligned at the bottom right)."""
    query, key, value = _project(hidden, cos, sin, w, eps, head_dim)
    rows = hidden.shape[0]
    keys = torch.cat([past_key.expand(rows, -1, -1, -1), key], dim=2)
    values = torch.cat([past_value.expand(rows, -1, -1, -1), value], dim=2)
    attended = torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask, scale=scaling, enable_gqa=True)
    return _finish(hidden, attended, w, eps)
