"""The real Qwen3-VL-Reranker backend (transformers), batched and left-padded."""
from reranker.models.qwen3vl.backend import BACKEND, Qwen3VLBackend
from reranker.models.qwen3vl.scorer import QwenScorer

__all__ = ["BACKEND", "Qwen3VLBackend", "QwenScorer"]
