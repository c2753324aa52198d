"""config.json contents for the Qwen3-VL-Reranker family (real 2B/8B shapes) and a tiny test model.

Written in the layout of the published checkpoints (transformers 4.57 style `rope_scaling`),
which every supported transformers version reads. Used by scripts/make_tiny_qwen.py and the
GPU benchmark; loading a real checkpoint never goes through here.
"""
from __future__ import annotations

from dataclasses import dataclass

VOCAB_SIZE = 151936
BOS_TOKEN_ID = 151643
EOS_TOKEN_ID = 151645
VISION_START_ID = 151652
VISION_END_ID = 151653
IMAGE_PAD_ID = 151655
VIDEO_PAD_ID = 151656


@dataclass(frozen=True)
class Shape:
    """The sizes that differ between members of the family."""

    text_hidden: int
    text_layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    tied: bool
    vision_depth: int
    vision_hidden: int
    vision_heads: int
    vision_ffn: int
    deepstack: tuple[int, ...]
    mrope_section: tuple[int, int, int]


SHAPES: dict[str, Shape] = {
    "2b": Shape(2048, 28, 16, 8, 128, 6144, True, 24, 1024, 16, 4096, (5, 11, 17), (24, 20, 20)),
    "8b": Shape(4096, 36, 32, 8, 128, 12288, False, 27, 1152, 16, 4304, (8, 16, 24), (24, 20, 20)),
    "tiny": Shape(64, 2, 4, 2, 16, 128, True, 2, 32, 2, 64, (0, 1), (4, 2, 2)),
}


def config_dict(shape: Shape) -> dict:
    """A config.json (as a dict) for Qwen3VLForConditionalGeneration of the given shape."""
    if sum(shape.mrope_section) * 2 != shape.head_dim:
        raise ValueError(f"mrope_section {shape.mrope_section} must sum to head_dim/2 ({shape.head_dim // 2})")
    text = {
        "model_type": "qwen3_vl_text",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": shape.text_hidden,
        "intermediate_size": shape.ffn,
        "num_hidden_layers": shape.text_layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-06,
        "rope_theta": 5000000,
        "rope_scaling": {
            "rope_type": "default",
            "mrope_section": list(shape.mrope_section),
            "mrope_interleaved": True,
        },
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "tie_word_embeddings": shape.tied,
        "use_cache": True,
        "dtype": "bfloat16",
    }
    vision = {
        "model_type": "qwen3_vl",
        "depth": shape.vision_depth,
        "hidden_size": shape.vision_hidden,
        "intermediate_size": shape.vision_ffn,
        "num_heads": shape.vision_heads,
        "hidden_act": "gelu_pytorch_tanh",
        "in_channels": 3,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": shape.text_hidden,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": list(shape.deepstack),
        "initializer_range": 0.02,
    }
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "text_config": text,
        "vision_config": vision,
        "image_token_id": IMAGE_PAD_ID,
        "video_token_id": VIDEO_PAD_ID,
        "vision_start_token_id": VISION_START_ID,
        "vision_end_token_id": VISION_END_ID,
        "tie_word_embeddings": shape.tied,
        "dtype": "bfloat16",
        "transformers_version": "4.57.0",  # as in the published checkpoints; newer versions read it too
    }
