"""ASGI middleware: Gradio's by-name routes (`/gradio_api/call/<name>`, `/call/v2/<name>`,
`/run/<name>`) answer only the public endpoints. Gradio still serves a private event by name to
anyone who guesses it; the page itself calls events by index through the queue, which stays open."""
from __future__ import annotations

import json
import re
from typing import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

_BY_NAME = re.compile(r"^/gradio_api/(?:call/v2|call|run)/([^/]+)/?")


class PublicEndpointsOnly:
    def __init__(self, app: ASGIApp, public: Collection[str]) -> None:
        self.app = app
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _BY_NAME.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or match.group(1) in self.public:
            await self.app(scope, receive, send)
            return
        message = f"no public Gradio endpoint named {match.group(1)!r}; public: {', '.join(sorted(self.public))}"
        body = json.dumps({"error": {"message": message, "type": "NotFound"}, "detail": message}).encode()
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
