"""Where media bytes come from: raw bytes, `data:` URIs, bare base64, files inside the allowed
folders, and (only with --allow-media-urls) https:// URLs through the guarded UrlFetcher.
Every other URL scheme is refused.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Protocol, Sequence

from reranker.errors import ForbiddenPath, MediaError, PayloadTooLarge
from reranker.settings import Limits
from reranker.textcheck import check_path, shown

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
MIN_BARE_BASE64 = 64  # shorter strings are paths: no real image encodes to fewer characters


class Fetcher(Protocol):
    def fetch(self, url: str, what: str) -> bytes: ...


class MediaResolver:
    """Turns a media reference from a request into bytes, enforcing the folder and size limits."""

    def __init__(self, allowed_dirs: Sequence[Path], limits: Limits, fetcher: Fetcher | None = None) -> None:
        self._allowed = tuple(Path(os.path.realpath(d)) for d in allowed_dirs)
        self._limits = limits
        self._fetcher = fetcher  # None: URLs are refused

    @property
    def allowed_dirs(self) -> tuple[Path, ...]:
        return self._allowed

    def read(self, ref: str | bytes, what: str) -> bytes:
        """The media bytes that `ref` names; `what` (e.g. "documents[3].image") labels errors."""
        if isinstance(ref, (bytes, bytearray, memoryview)):
            return self._checked_size(bytes(ref), what)
        if not isinstance(ref, str):
            raise MediaError(f"{what}: expected bytes, a data: URI or a file path, got {type(ref).__name__}")
        text = ref.strip()
        if not text:
            raise MediaError(f"{what}: empty media reference")
        if text[:5].lower() == "data:":
            return self._from_data_uri(text, what)
        if text[:7].lower() == "file://":
            return self._from_path(text[7:], what)
        if looks_like_base64(text):
            return self._from_base64(text, what)
        scheme = _SCHEME.match(text)
        if scheme and scheme.group(1).lower() in ("https", "http"):
            if self._fetcher is None:
                raise MediaError(
                    f"{what}: URL {text[:80]!r} is not supported: nothing is fetched from the network unless the "
                    "service runs with --allow-media-urls (https only); send the media as a data: URI or base64"
                )
            return self._checked_size(self._fetcher.fetch(text, what), what)
        if scheme:
            raise MediaError(
                f"{what}: URL scheme {scheme.group(1)!r} is not supported; nothing is fetched from the "
                "network. Send the media inline as a data: URI or as a file path inside a --media-dir folder"
            )
        return self._from_path(text, what)

    def _checked_size(self, data: bytes, what: str) -> bytes:
        if len(data) > self._limits.max_media_bytes:
            raise PayloadTooLarge(
                f"{what}: {len(data)} bytes is over the limit max_media_bytes={self._limits.max_media_bytes}"
            )
        if not data:
            raise MediaError(f"{what}: no media bytes (empty)")
        return data

    def _from_data_uri(self, uri: str, what: str) -> bytes:
        header, sep, payload = uri.partition(",")
        if not sep:
            raise MediaError(f"{what}: data: URI has no ',' separating header and payload")
        params = header[5:].split(";")
        if "base64" not in (p.strip().lower() for p in params[1:]):
            raise MediaError(f"{what}: data: URI must be base64-encoded (data:<mime>;base64,...), got {header!r}")
        return self._from_base64(payload, what)

    def _from_base64(self, payload: str, what: str) -> bytes:
        compact = "".join(payload.split())
        if len(compact) * 3 // 4 > self._limits.max_media_bytes + 2:
            raise PayloadTooLarge(
                f"{what}: about {len(compact) * 3 // 4} bytes after base64 decoding is over the limit "
                f"max_media_bytes={self._limits.max_media_bytes}"
            )
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MediaError(f"{what}: invalid base64 ({exc})") from None
        return self._checked_size(data, what)

    def _from_path(self, raw: str, what: str) -> bytes:
        check_path(raw, what)
        if not self._allowed:
            raise ForbiddenPath(
                f"{what}: file path {shown(raw)} refused because no media folder is allowed; start the "
                "service with --media-dir DIR (or RERANKER_MEDIA_DIRS) to let requests name files in DIR"
            )
        path = self._inside_allowed(raw, what)
        try:
            if not path.is_file():
                raise MediaError(f"{what}: file {shown(raw)} does not exist or is not a regular file")
            size = path.stat().st_size
            if size > self._limits.max_media_bytes:
                raise PayloadTooLarge(
                    f"{what}: file {shown(raw)} has {size} bytes, over the limit "
                    f"max_media_bytes={self._limits.max_media_bytes}"
                )
            return self._checked_size(path.read_bytes(), what)
        except OSError as exc:
            raise MediaError(f"{what}: cannot read file {shown(raw)} ({exc.strerror or type(exc).__name__})") from None

    def _inside_allowed(self, raw: str, what: str) -> Path:
        inside = resolve_within(raw, self._allowed)
        if inside is not None:
            return inside
        raise ForbiddenPath(
            f"{what}: path {shown(raw)} resolves outside the allowed media folders "
            f"({', '.join(str(d) for d in self._allowed)})"
        )


def looks_like_base64(text: str) -> bool:
    """Bare base64 (Jina and vLLM clients send images so): long, only base64 characters."""
    compact = "".join(text.split())
    return len(compact) >= MIN_BARE_BASE64 and len(compact) % 4 == 0 and bool(_BASE64.fullmatch(compact))


def resolve_within(raw: str, folders: Sequence[Path]) -> Path | None:
    """The real path (symlinks and `..` resolved) that `raw` names inside one of `folders`, or None.

    A relative `raw` is taken relative to each folder in turn; an absolute one must resolve inside
    one of them. The one confinement rule for every front end (REST media paths, Gradio payloads).
    """
    if "\x00" in raw:
        return None
    given = Path(raw)
    roots = tuple(Path(os.path.realpath(f)) for f in folders)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    try:
        inside = [
            real
            for real in (Path(os.path.realpath(c)) for c in candidates)
            if any(_is_within(real, root) for root in roots)
        ]
        if inside:  # exists() raises on a name over NAME_MAX (ENAMETOOLONG), so inside the try
            return next((real for real in inside if real.exists()), inside[0])
    except (OSError, ValueError):
        return None
    return None


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
