"""Wiring only: settings -> service -> one FastAPI app (Gradio UI + REST + /metrics) -> uvicorn."""
from __future__ import annotations

import logging
import os
import secrets
import sys

from pathlib import Path

from reranker.errors import RerankerError
from reranker.logs import configure_logging
from reranker.settings import Settings, settings_from

log = logging.getLogger("reranker.app")
ASSETS = Path(__file__).resolve().parent / "assets"


def quiet_offline_environment(settings: Settings) -> None:
    """Before gradio or transformers are imported: no analytics, no progress bars, and no hub
    access unless the operator allowed downloads."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not settings.allow_downloads:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_app(settings: Settings, admin_token: str):  # -> (FastAPI, RerankService)
    import gradio as gr

    from reranker.api import create_api
    from reranker.api_observe import ObserveMiddleware
    from reranker.clock import SystemClock
    from reranker.service import RerankService
    from ui import build_ui
    from ui.app import PUBLIC_ENDPOINTS
    from ui.endpoint_guard import PublicEndpointsOnly
    from ui.file_guard import GradioFileGuard
    from ui.style import page_options

    service = RerankService(settings, SystemClock(), admin_token)
    api = create_api(service, settings.limits.max_request_bytes, observe=False)
    blocks = build_ui(service)
    # /gradio_api/file= serves Gradio's upload cache and assets/ (the public example media) only;
    # --media-dir folders are inputs of the REST API, not published.
    app = gr.mount_gradio_app(
        api, blocks, path="/", server_name=settings.host, server_port=settings.port,
        allowed_paths=[str(ASSETS)], max_file_size=settings.limits.max_media_bytes, footer_links=["api"],
        **page_options(),
    )
    # mount_gradio_app never sets has_launched, and Gradio skips its own "was this file uploaded by
    # a user?" check on event payloads while it is False (processing_utils._check_allowed).
    blocks.has_launched = True
    app.add_middleware(GradioFileGuard)
    app.add_middleware(PublicEndpointsOnly, public=PUBLIC_ENDPOINTS)  # outermost: by-name calls of private events 404
    app.add_middleware(ObserveMiddleware, metrics=service.metrics)  # outermost: request id, status series, access log
    app.router.on_startup.append(lambda: service.start())
    app.router.on_shutdown.append(service.close)
    return app, service


def main(argv: list[str]) -> int:
    try:
        settings = settings_from(argv, os.environ)
    except RerankerError as exc:
        print(f"app.py: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    quiet_offline_environment(settings)
    token = settings.admin_token
    if not token:
        token = secrets.token_urlsafe(24)
        settings = settings.with_(admin_token=token)
        log.info("Admin token (operator actions; set RERANKER_ADMIN_TOKEN to fix it): %s", token)
    try:
        app, _ = build_app(settings, token)
    except RerankerError as exc:  # e.g. a read-only data directory: one line, no traceback
        print(f"app.py: {exc}", file=sys.stderr)
        return 3

    from reranker.server import server_for

    log.info("Serving on http://%s:%s  (model %s)", settings.host, settings.port, settings.model)
    server_for(app, settings.host, settings.port, settings.server).run()
    return 0


def cli() -> None:
    """The `reranker-console` command (pyproject.toml): the same as `python app.py`."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
