"""Decoded media kept by content hash, so the same bytes are decoded once."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence, cast

from reranker.content import ImageItem, VideoItem
from reranker.media.heap import trim_heap
from reranker.media.images import decode_image
from reranker.media.video import DEFAULT_BACKENDS, decode_video
from reranker.settings import Limits

DEFAULT_MAX_BYTES = 256 << 20

Decoded = ImageItem | VideoItem


@dataclass(frozen=True)
class MediaCacheStats:
    entries: int
    bytes: int
    hits: int
    misses: int


def decoded_bytes(item: Decoded) -> int:
    """Memory the decoded pixels take (RGB, one byte per channel)."""
    if isinstance(item, ImageItem):
        width, height = item.size
        return width * height * 3
    return sum(frame.nbytes for frame in item.frames)


class MediaDecoder:
    """Decodes images and videos through a bounded, thread-safe LRU keyed by sha256 of the bytes.

    Bounded by entry count and by decoded bytes; an item bigger than the byte budget is
    returned but not kept. Failed decodes are not cached.
    """

    def __init__(
        self,
        limits: Limits,
        cache_entries: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        video_backends: Sequence[str] = DEFAULT_BACKENDS,
    ) -> None:
        self._limits = limits
        self._max_entries = max(0, cache_entries)
        self._max_bytes = max_bytes
        self._video_backends = tuple(video_backends)
        self._items: OrderedDict[tuple[str, str], tuple[Decoded, int]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def image(self, data: bytes, what: str, check: Callable[[], None] = lambda: None) -> ImageItem:
        check()
        item = self._get_or_decode("image", data, lambda d: decode_image(data, self._limits, what, d))
        return cast(ImageItem, item)

    def video(self, data: bytes, what: str, check: Callable[[], None] = lambda: None) -> VideoItem:
        check()
        item = self._get_or_decode(
            "video",
            data,
            lambda d: decode_video(data, self._limits, what, d, backends=self._video_backends, check=check),
        )
        return cast(VideoItem, item)

    def stats(self) -> MediaCacheStats:
        with self._lock:
            return MediaCacheStats(len(self._items), self._bytes, self._hits, self._misses)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _get_or_decode(self, kind: str, data: bytes, decode: Callable[[str], Decoded]) -> Decoded:
        digest = hashlib.sha256(data).hexdigest()
        key = (kind, digest)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self._hits += 1
                return found[0]
            self._misses += 1
        try:
            item = decode(digest)
        finally:
            trim_heap()  # the full-size decode buffers are freed: give their pages back
        self._keep(key, item)
        return item

    def _keep(self, key: tuple[str, str], item: Decoded) -> None:
        size = decoded_bytes(item)
        if self._max_entries == 0 or size > self._max_bytes:
            return
        with self._lock:
            previous = self._items.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            self._items[key] = (item, size)
            self._bytes += size
            while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
