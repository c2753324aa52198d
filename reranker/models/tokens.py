"""Measure and cut text with a backend's own tokenizer (the REST API's token limits).

The limiter keeps its own copy of the tokenizer behind a lock: a fast tokenizer's truncation
settings are mutable state, and the engine's worker thread uses the original while requests are
measured on their own threads.
"""
from __future__ import annotations

import copy
import threading
from typing import Any


class TextMeasure:
    """Token counts and token-exact prefixes of plain text (no special tokens added)."""

    def __init__(self, tokenizer: Any) -> None:
        self._source = tokenizer
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        with self._lock:
            return len(self._own()(text, add_special_tokens=False)["input_ids"])

    def cut(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` that holds at most `max_tokens` tokens (the text itself
        when it is short enough; "" for max_tokens <= 0). Cut at a token's end offset, so the
        prefix is the original characters, never a decoded approximation."""
        if max_tokens <= 0:
            return ""
        with self._lock:
            encoded = self._own()(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[: int(offsets[max_tokens - 1][1])].rstrip()

    def _own(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = copy.deepcopy(self._source)
        return self._tokenizer
