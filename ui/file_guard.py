"""Files named in Gradio event payloads are untrusted: only Gradio's own upload cache (and the
shipped example media) may reach a callback, and the server never fetches a URL for a client.

Two layers, both using the REST API's confinement rule (`reranker.media.sources.resolve_within`):
- `GradioFileGuard`, an ASGI middleware in front of the mounted Gradio app: refuses an event payload
  (`/gradio_api/queue/join`, `/gradio_api/call/...`, `/gradio_api/run/...`) that names a file path
  outside the upload cache, or a URL, before Gradio copies anything; refuses `/gradio_api/file=<url>`
  (Gradio would fetch that URL on the client's behalf).
- `confine_upload`, called by the UI's input helpers on every path a callback receives.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reranker.errors import ForbiddenPath
from reranker.media.sources import resolve_within

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
API_PREFIX = "/gradio_api/"
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # event payloads carry file references, never file bytes


def upload_roots() -> tuple[Path, ...]:
    """Where Gradio keeps files a user uploaded (and copies of files the app returned)."""
    from gradio import utils

    return (Path(utils.get_upload_folder()), Path(utils.get_cache_folder()))


def confine_upload(path: str | None, what: str, extra_roots: tuple[Path, ...] = (EXAMPLES_DIR,)) -> str | None:
    """`path` (real, resolved) if it lies in Gradio's upload cache or the shipped examples; else refused."""
    if not path:
        return None
    inside = None if _URL.match(path) else resolve_within(path, (*upload_roots(), *extra_roots))
    if inside is None:
        raise ForbiddenPath(f"{what}: {path!r} is not a file uploaded to this page; upload the file instead")
    return str(inside)


def file_references(value: Any, where: str = "data") -> Iterator[tuple[str, str]]:
    """(location, path) of every FileData-shaped object (a dict with a string "path") in a payload."""
    if isinstance(value, dict):
        path = value.get("path")
        if isinstance(path, str):
            yield where, path
        for key, item in value.items():
            yield from file_references(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from file_references(item, f"{where}[{index}]")


def refused_reference(payload: Any, roots: tuple[Path, ...]) -> str | None:
    """Why the payload is refused (the first bad file reference), or None when every path is an upload."""
    for where, path in file_references(payload.get("data") if isinstance(payload, dict) else payload):
        if _URL.match(path):
            return f"{where}.path: URLs are not accepted ({path[:80]!r}); upload the file instead"
        if resolve_within(path, roots) is None:
            return f"{where}.path: {path[:200]!r} is not a file uploaded to this page; upload the file instead"
    return None


class GradioFileGuard:
    """ASGI middleware: checks Gradio event payloads and the file route before Gradio sees them."""

    def __init__(self, app: ASGIApp, roots: tuple[Path, ...] | None = None) -> None:
        self.app = app
        self._roots = roots

    def roots(self) -> tuple[Path, ...]:
        return self._roots if self._roots is not None else upload_roots()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        if path.startswith(API_PREFIX + "file=") and _URL.match(path[len(API_PREFIX) + 5:]):
            await _refuse(send, 403, "file=: URLs are not served; this server fetches nothing for a client")
            return
        if scope.get("method") != "POST" or path.startswith(API_PREFIX + "upload"):
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive, MAX_PAYLOAD_BYTES)
        if not complete:
            await _refuse(send, 413, f"event payload is larger than {MAX_PAYLOAD_BYTES} bytes")
            return
        try:
            payload = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            payload = None  # not JSON: Gradio refuses it itself
        reason = refused_reference(payload, self.roots()) if payload is not None else None
        if reason is not None:
            await _refuse(send, 403, reason)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, rest: Receive) -> Receive:
    """The buffered body once, then the client's own messages (so a disconnect is still seen)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await rest()

    return receive


async def _refuse(send: Send, status: int, message: str) -> None:
    data = json.dumps({"error": {"message": message, "type": "ForbiddenPath" if status == 403 else "PayloadTooLarge"},
                       "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
