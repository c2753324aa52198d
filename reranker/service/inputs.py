"""Turns raw request items into decoded Content, enforcing the request limits."""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

from reranker.cancel import CancelToken
from reranker.content import Content, ImageItem, VideoItem
from reranker.errors import InputError, PayloadTooLarge
from reranker.media.video import video_from_frames
from reranker.service.types import FrameList, MediaRef, RankRequest, RawItem, VideoRef
from reranker.settings import Limits
from reranker.textcheck import check_text


class MediaReader(Protocol):
    def read(self, ref: str | bytes, what: str) -> bytes: ...


class MediaDecoding(Protocol):
    def image(self, data: bytes, what: str, check: Callable[[], None] = ...) -> ImageItem: ...

    def video(self, data: bytes, what: str, check: Callable[[], None] = ...) -> VideoItem: ...


class PixelBudget:
    """Decoded pixels one request may hold (max_request_pixels); over it the request gets a 413."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, pixels: int, what: str) -> None:
        self.used += pixels
        if self.used > self.limit:
            raise PayloadTooLarge(
                f"{what}: the request's media decode to {self.used}+ pixels, over the limit "
                f"max_request_pixels={self.limit}"
            )


def pixels_of(item: ImageItem | VideoItem) -> int:
    if isinstance(item, ImageItem):
        width, height = item.size
        return width * height
    return sum(int(frame.shape[0]) * int(frame.shape[1]) for frame in item.frames)


class InputBuilder:
    """Validates a RankRequest against the limits and decodes its media (with a shared cache)."""

    def __init__(self, limits: Limits, reader: MediaReader, decoder: MediaDecoding) -> None:
        self._limits = limits
        self._reader = reader
        self._decoder = decoder

    def check_shape(self, request: RankRequest) -> None:
        """Cheap checks that need no decoding: counts, lengths, top_n."""
        limits = self._limits
        if _is_blank(request.query):
            raise InputError("query is empty: give text, an image or a video")
        if not request.documents:
            raise InputError("documents is empty: give at least one document")
        if len(request.documents) > limits.max_documents:
            raise InputError(
                f"documents has {len(request.documents)} items; the limit is {limits.max_documents}"
            )
        if request.top_n is not None and request.top_n < 1:
            raise InputError(f"top_n must be >= 1, got {request.top_n}")
        if request.instruction is not None:
            if len(request.instruction) > limits.max_instruction_chars:
                raise InputError(
                    f"instruction has {len(request.instruction)} characters; "
                    f"the limit is {limits.max_instruction_chars} (setting max_instruction_chars)"
                )
            check_text(request.instruction, "instruction")
        self._check_item(request.query, "query")
        for i, doc in enumerate(request.documents):
            if _is_blank(doc):
                raise InputError(f"documents[{i}] is empty: give text, an image or a video")
            self._check_item(doc, f"documents[{i}]")

    def _check_item(self, item: RawItem, what: str) -> None:
        limits = self._limits
        if item.text is not None and len(item.text) > limits.max_text_chars:
            raise InputError(
                f"{what}.text has {len(item.text)} characters; the limit is {limits.max_text_chars}"
            )
        if item.text is not None:
            check_text(item.text, f"{what}.text")
        if len(item.images) > limits.max_images_per_item:
            raise InputError(
                f"{what} has {len(item.images)} images; the limit is {limits.max_images_per_item}"
            )
        if len(item.videos) > limits.max_videos_per_item:
            raise InputError(
                f"{what} has {len(item.videos)} videos; the limit is {limits.max_videos_per_item}"
            )
        for ref in item.videos:
            if isinstance(ref, FrameList) and not 1 <= len(ref.frames) <= limits.max_frame_list_frames:
                raise InputError(
                    f"{what}.video.frames has {len(ref.frames)} frames; give 1 to {limits.max_frame_list_frames}"
                )

    def build(self, request: RankRequest, cancel: CancelToken | None = None) -> tuple[Content, list[Content]]:
        """Decoded query and documents; stops early (RequestCancelled) once `cancel` is set."""
        self.check_shape(request)
        token = cancel or CancelToken()
        budget = PixelBudget(self._limits.max_request_pixels)
        query = self.content(request.query, "query", budget, token)
        documents = [self.content(doc, f"documents[{i}]", budget, token) for i, doc in enumerate(request.documents)]
        return query, documents

    def content(self, item: RawItem, what: str, budget: PixelBudget | None = None,
                cancel: CancelToken | None = None) -> Content:
        budget = budget or PixelBudget(self._limits.max_request_pixels)
        token = cancel or CancelToken()
        images = []
        for ref in item.images:
            image = self._decoder.image(self._bytes(ref, f"{what}.image"), f"{what}.image",
                                        lambda: token.check(f"{what}.image"))
            budget.spend(pixels_of(image), f"{what}.image")
            images.append(image)
        videos = []
        for ref in item.videos:
            video = self._video(ref, f"{what}.video", lambda: token.check(f"{what}.video"))
            budget.spend(pixels_of(video), f"{what}.video")
            videos.append(video)
        text = item.text if item.text and item.text.strip() else None
        return Content(text=text, images=tuple(images), videos=tuple(videos))

    def _video(self, ref: VideoRef, what: str, check: Callable[[], None]) -> VideoItem:
        if not isinstance(ref, FrameList):
            return self._decoder.video(self._bytes(ref, what), what, check)
        frames = [
            self._decoder.image(self._bytes(frame, f"{what}.frames[{i}]"), f"{what}.frames[{i}]", check)
            for i, frame in enumerate(ref.frames)
        ]
        return video_from_frames(frames, self._limits, what)

    def _bytes(self, ref: MediaRef, what: str) -> bytes:
        return self._reader.read(ref, what)


def _is_blank(item: RawItem) -> bool:
    return not (item.text and item.text.strip()) and not item.images and not item.videos


def top_results(scores: Sequence[float], top_n: int | None) -> list[tuple[int, float]]:
    """(index, score) pairs, best first; ties keep document order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if top_n is not None:
        order = order[:top_n]
    return [(i, float(scores[i])) for i in order]
