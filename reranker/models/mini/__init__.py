"""The offline default model: MiniLM text embeddings + an ImageNet classifier's label words."""
from reranker.models.mini.backend import BACKEND, MiniBackend
from reranker.models.mini.manifest import MiniConfig
from reranker.models.mini.scorer import MiniReranker

__all__ = ["BACKEND", "MiniBackend", "MiniConfig", "MiniReranker"]

