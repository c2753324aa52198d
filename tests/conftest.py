"""Shared fixtures: a started RerankService on the real mini model and TestClients over it.

`service` / `client` are session-scoped (loading mini takes seconds): a test that changes
versions or traffic restores them (`reset_service`, or the `restore_service` fixture).
`make_service` builds fresh services for tests that need other settings or a cold start.
Import the helpers as `from tests.conftest import ...` (run pytest as `python -m pytest` from the
repository root): tests/e2e has a conftest.py too, so a bare `from conftest import` may get that one.
"""
from __future__ import annotations

import base64
import mimetypes
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from reranker.clock import SystemClock  # noqa: E402
from reranker.settings import Limits, Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
EXAMPLES = (ROOT / "assets" / "examples").resolve()
IMAGES = EXAMPLES / "images"
VIDEOS = EXAMPLES / "videos"
STABLE = "mini-v1"
CANDIDATE = "mini-v2"
ADMIN_TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TEST_LIMITS = Limits(max_documents=20, max_request_bytes=2 * 1024 * 1024, max_video_seconds=30.0)


def make_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings for a test service: mini-v1, the example media folder, compressed rollout times."""
    base = Settings(
        model=str(MODELS / STABLE),
        data_dir=data_dir,
        media_dirs=(EXAMPLES,),
        models_dir=MODELS,
        admin_token=ADMIN_TOKEN,
        device="cpu",
        rollout_time_scale=0.01,
        golden_set=EXAMPLES / "labelled_set.json",
        limits=TEST_LIMITS,
    )
    return base.with_(**changes)


def build_service(settings: Settings, start: bool = True) -> Any:
    from reranker.service import RerankService

    service = RerankService(settings, SystemClock(), ADMIN_TOKEN)
    if start:
        service.start(wait=True)
    return service


def api_client(service: Any, max_request_bytes: int | None = None) -> TestClient:
    from reranker.api import create_api

    limit = max_request_bytes if max_request_bytes is not None else service.settings.limits.max_request_bytes
    return TestClient(create_api(service, limit))


def data_uri(source: Path | bytes, mime: str | None = None) -> str:
    """A base64 data: URI of a file or of raw bytes."""
    data = source.read_bytes() if isinstance(source, Path) else source
    if mime is None:
        guessed = mimetypes.guess_type(source.name)[0] if isinstance(source, Path) else None
        mime = guessed or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_uri(name: str) -> str:
    return data_uri(IMAGES / name)


def video_uri(name: str) -> str:
    return data_uri(VIDEOS / name)


def wait_for_version(service: Any, version: str, timeout_s: float = 60.0) -> str:
    """Block until a loading version is ready (or failed); returns its state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = service.registry.get(version).state.value
        if state != "loading":
            return state
        time.sleep(0.05)
    raise AssertionError(f"version {version!r} still loading after {timeout_s} s")


def load_version(service: Any, ref: str = CANDIDATE) -> str:
    """Load a model directory beside the serving version (no traffic) and wait until ready."""
    version = service.load_version(str(MODELS / ref), actor="test")
    state = wait_for_version(service, version)
    assert state == "ready", f"{version} ended {state}: {service.registry.get(version).reason}"
    return version


def reset_service(service: Any, stable: str = STABLE) -> None:
    """Back to the session baseline: all traffic on `stable`, every other version unloaded."""
    service.request_log.flush(timeout_s=5.0)
    service.set_traffic({"weights": {stable: 100}}, actor="test")
    for version in service.usable_versions():
        if version != stable:
            service.unload_version(version, actor="test")


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A started service on mini-v1, shared by the whole session."""
    started = build_service(make_settings(tmp_path_factory.mktemp("service-data")))
    yield started
    started.close()


@pytest.fixture(scope="session")
def client(service: Any) -> TestClient:
    """The REST API over the shared service, with the settings' body limit."""
    return api_client(service)


@pytest.fixture
def restore_service(service: Any) -> Iterator[Any]:
    """The shared service, put back to one stable version with all traffic after the test."""
    yield service
    reset_service(service)


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory for fresh services (own data dir); every one is closed after the test.

    make_service(start=False, **settings_changes) -> RerankService
    """
    made: list[Any] = []

    def factory(start: bool = True, **changes: Any) -> Any:
        data_dir = tmp_path / f"service-{len(made)}"
        built = build_service(make_settings(data_dir, **changes), start=start)
        made.append(built)
        return built

    yield factory
    for built in made:
        built.close()


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated tiny Qwen3-VL checkpoint (real tokenizer, random weights; a few seconds)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tiny_qwen", ROOT / "scripts" / "make_tiny_qwen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(tmp_path_factory.mktemp("tiny-qwen3-vl"))
