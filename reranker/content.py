"""What a query or a document is once its media are decoded: text, images, videos.

These are plain immutable values shared by the media, model and engine layers.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True, eq=False)
class ImageItem:
    """A decoded image: RGB (transparency already flattened onto white)."""

    image: Image.Image
    digest: str  # sha256 hex of the source bytes

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


@dataclass(frozen=True, eq=False)
class VideoItem:
    """A decoded video: the sampled frames (RGB uint8, H x W x 3) and their times in seconds.

    Frames are sampled as the Qwen3-VL reference does (see reranker.media.video): an even
    count, evenly spaced over the clip. Backends that need fewer frames subsample these.
    `from_frames` is True for a video given as a list of images (its frames keep their own
    size; the Qwen3-VL reference sends each through the image rule before the video rule).
    """

    frames: tuple[np.ndarray, ...]
    timestamps: tuple[float, ...]
    digest: str
    duration: float
    source_fps: float
    from_frames: bool = False

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.timestamps):
            raise ValueError(
                f"frames ({len(self.frames)}) and timestamps ({len(self.timestamps)}) differ in count"
            )


@dataclass(frozen=True)
class Content:
    """One side of a pair (a query or a document): any mix of text, images and videos."""

    text: str | None = None
    images: tuple[ImageItem, ...] = ()
    videos: tuple[VideoItem, ...] = ()
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        h = hashlib.sha256()
        # surrogatepass: a lone surrogate (refused by the input checks) must never crash hashing
        h.update(b"T" + (self.text or "").encode("utf-8", "surrogatepass") + b"\0")
        for item in self.images:
            h.update(b"I" + item.digest.encode("ascii"))
        for item in self.videos:
            h.update(b"V" + item.digest.encode("ascii"))
        object.__setattr__(self, "digest", h.hexdigest())

    def is_empty(self) -> bool:
        return not (self.text and self.text.strip()) and not self.images and not self.videos

    def kinds(self) -> list[str]:
        """The media kinds present, e.g. ['text', 'image']."""
        out = []
        if self.text and self.text.strip():
            out.append("text")
        if self.images:
            out.append("image")
        if self.videos:
            out.append("video")
        return out


@dataclass(frozen=True)
class Pair:
    """A (query, document) pair to score, with the task instruction (None = the default)."""

    query: Content
    document: Content
    instruction: str | None = None
