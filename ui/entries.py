"""What the user typed or dropped, as plain values, and how it becomes a RankRequest."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from reranker.errors import InputError
from reranker.service.types import Caller, RankRequest, RawItem
from ui.file_guard import confine_upload

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})


@dataclass(frozen=True)
class Entry:
    """One query or document: text and/or the path of an image and/or a video file."""

    text: str | None = None
    image: str | None = None
    video: str | None = None

    def is_blank(self) -> bool:
        return not (self.text and self.text.strip()) and not self.image and not self.video

    @property
    def kind(self) -> str:
        kinds = [k for k, v in (("text", self.text), ("image", self.image), ("video", self.video)) if v]
        return kinds[0] if len(kinds) == 1 else "mixed"


def kind_of(path: str) -> str:
    """'image' or 'video' by file extension."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    known = ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
    raise InputError(f"file {Path(path).name!r} has extension {suffix or '(none)'!r}; expected one of {known}")


def entry(text: str | None, image: str | None, video: str | None, what: str = "query") -> Entry:
    """Paths must be uploads to this page (Gradio's cache) or shipped examples: see ui.file_guard."""
    return Entry(text=(text or "").strip() or None, image=confine_upload(image, f"{what}.image"),
                 video=confine_upload(video, f"{what}.video"))


def within_limit(entries: tuple[Entry, ...], limit: int | None, added: int) -> tuple[Entry, ...]:
    """Refused when adding, not only on Rank: the service takes at most `limit` documents."""
    if limit is not None and len(entries) > limit:
        raise InputError(f"documents would have {len(entries)} items; the limit is {limit}"
                         f" (you have {len(entries) - added}; add at most {max(limit - len(entries) + added, 0)} more)")
    return entries


def add_one(entries: Sequence[Entry], text: str | None, image: str | None, video: str | None,
            limit: int | None = None) -> tuple[Entry, ...]:
    new = entry(text, image, video, what=f"documents[{len(entries)}]")
    if new.is_blank():
        raise InputError("the new document is empty: give text, an image or a video")
    return within_limit((*entries, new), limit, 1)


def add_bulk(entries: Sequence[Entry], lines: str | None, files: Sequence[str] | None,
             limit: int | None = None) -> tuple[Entry, ...]:
    """Each non-empty line becomes a text document; each file an image or video document."""
    texts = [Entry(text=line.strip()) for line in (lines or "").splitlines() if line.strip()]
    confined = [confine_upload(path, f"files[{i}]") for i, path in enumerate(files or ())]
    media = [Entry(**{kind_of(path): path}) for path in confined if path]
    if not texts and not media:
        raise InputError("nothing to add: paste lines of text or drop image/video files")
    return within_limit((*entries, *texts, *media), limit, len(texts) + len(media))


def _read(path: str, what: str) -> bytes:
    confined = confine_upload(path, what) or ""
    try:
        return Path(confined).read_bytes()
    except OSError as exc:
        raise InputError(f"{what} file {Path(path).name!r} could not be read: {exc.strerror}") from None


def raw_item(item: Entry, what: str) -> RawItem:
    return RawItem(
        text=item.text,
        images=(_read(item.image, f"{what}.image"),) if item.image else (),
        videos=(_read(item.video, f"{what}.video"),) if item.video else (),
    )


def parse_top_n(value: float | int | str | None) -> int | None:
    if value in (None, "", 0):
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise InputError(f"top-n must be a whole number, got {value!r}") from None
    if number < 1:
        raise InputError(f"top-n must be >= 1 (or empty for all), got {value!r}")
    return number


def rank_request(query: Entry, documents: Sequence[Entry], instruction: str | None, top_n: float | int | str | None,
                 user_key: str | None) -> RankRequest:
    """Reads the files' bytes: uploads live outside the service's media folders."""
    if query.is_blank():
        raise InputError("query is empty: type text or add an image or a video")
    if not documents:
        raise InputError("documents is empty: add at least one document")
    return RankRequest(
        query=raw_item(query, "query"),
        documents=tuple(raw_item(d, f"documents[{i}]") for i, d in enumerate(documents)),
        top_n=parse_top_n(top_n),
        instruction=(instruction or "").strip() or None,
        caller=Caller(user_key=user_key),
    )
