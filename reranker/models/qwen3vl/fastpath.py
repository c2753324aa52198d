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

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from reranker.models.qwen3vl.vision import VisualInput, normalize


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
        from transformers.models.qwen3_vl import modeling_qwen3_vl

        self._apply_rope = modeling_qwen3_vl.apply_rotary_pos_emb

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
        if past:
            mask = torch.ones((length, past + length), dtype=torch.bool, device=self.device).tril(past)
        final = len(self._layers) - 1
        for index, layer in enumerate(self._layers):
            cached = (prefix.keys[index], prefix.values[index]) if prefix is not None else None
            if index == final:
                return self._last_layer(layer, hidden, cos, sin, cached, last)
            hidden, _, _ = self._layer(layer, hidden, cos, sin, cached, mask, causal=not past)
            hidden = _deepstack(hidden, visual_mask, deepstack, index)
        raise AssertionError("unreachable")

    def _layer(self, layer: Any, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               cached: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None, causal: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        residual = hidden
        query, key, value = self._qkv(layer, layer.input_layernorm(hidden), cos, sin)
        keys, values = self._with_prefix(key, value, cached)
        attended = self._attend(query, keys, values, mask, causal)
        hidden = residual + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(*hidden.shape[:2], -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
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
