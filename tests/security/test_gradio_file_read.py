"""Issue 8, item 1: no file of the server leaves through the Gradio API.

The attack on the first build: POST /gradio_api/call/rank with a FileData whose path is
/proc/self/environ; Gradio copied it into its cache and served it, admin token included. Here every
Gradio event that takes a file (enumerated from the page's /config, hidden ones too, and from
/gradio_api/info) is sent paths outside the upload cache, `..` paths, symlinks and URLs, against
a real `app.py` process; none may be accepted and no byte of the secret may reach the cache.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e.conftest import _wait_ready, free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "rr-secret-marker-5f2c9a"
TOKEN = "security-admin-token-7d1e"
FILE_TYPES = {"image", "video", "file", "gallery", "audio", "model3d", "uploadbutton", "multimodaltextbox"}
PNG = (ROOT / "assets" / "examples" / "images").glob("*.png")


class Target:
    def __init__(self, url: str, cache: Path, outside: Path, media: Path) -> None:
        self.url, self.cache, self.outside, self.media = url, cache, outside, media


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("file-read")
    cache, media = folder / "gradio-cache", folder / "media"
    cache.mkdir()
    media.mkdir()
    outside = folder / "outside-secret.txt"
    outside.write_text(f"TOKEN={SECRET}\n")
    (media / "link-out.png").symlink_to(outside)
    (cache / "link-out.png").symlink_to(outside)  # a symlink planted inside the cache itself
    port, log = free_port(), folder / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(cache),
           "RR_TEST_SECRET": SECRET, "RERANKER_ADMIN_TOKEN": TOKEN}
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(folder / "data"),
               "--model", "models/mini-v1", "--media-dir", str(media)]
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield Target(url, cache, outside, media)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def file_dependencies(url: str) -> list[tuple[int, list[str]]]:
    """(fn_index, input component types) of every event whose inputs include a file component."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    types = {c["id"]: c.get("type", "") for c in config["components"]}
    found = []
    for index, dep in enumerate(config["dependencies"]):
        inputs = [types.get(i, "") for i in dep.get("inputs", [])]
        if any(t in FILE_TYPES for t in inputs):
            found.append((dep.get("id", index), inputs))
    return found


def file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}


def payload(inputs: list[str], path: str) -> list[Any]:
    """Every file input names `path` (a list of them for multi-file inputs); other inputs blank."""
    data: list[Any] = []
    for kind in inputs:
        if kind in ("file", "gallery"):
            data.append([file_data(path)])
        elif kind in FILE_TYPES:
            data.append(file_data(path))
        else:
            data.append(None)
    return data


def hostile_paths(target: Target) -> list[str]:
    return [
        "/proc/self/environ",
        "/etc/passwd",
        str(target.outside),
        f"{target.cache}/../{target.outside.name}",
        f"{target.cache}/../../../../../../proc/self/environ",
        str(target.cache / "link-out.png"),
        str(target.media / "link-out.png"),
        "http://127.0.0.1:1/x.png",
        "file:///etc/passwd",
    ]


def secret_leaked(cache: Path) -> list[str]:
    leaks = []
    for path in cache.rglob("*"):
        if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes():
            leaks.append(str(path))
    return leaks


def test_every_file_event_refuses_paths_outside_the_upload_cache(target: Target) -> None:
    dependencies = file_dependencies(target.url)
    assert dependencies, "the console has events that take files; none found in /config"
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for fn_index, inputs in dependencies:
            for path in hostile_paths(target):
                body = {"data": payload(inputs, path), "fn_index": fn_index, "session_hash": "attacker01"}
                reply = client.post("/gradio_api/queue/join", json=body)
                assert reply.status_code == 403, (fn_index, path, reply.status_code, reply.text[:300])
                assert "upload" in reply.json()["error"]["message"] or "URL" in reply.json()["error"]["message"]
    assert secret_leaked(target.cache) == []


def test_named_api_endpoints_refuse_server_paths(target: Target) -> None:
    info = httpx.get(f"{target.url}/gradio_api/info", timeout=30).json()
    named = {name: spec for name, spec in info.get("named_endpoints", {}).items()
             if any("filepath" in str(p.get("python_type", "")) or p.get("component") in ("Image", "Video", "File")
                    for p in spec.get("parameters", []))}
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for name, spec in named.items():
            for path in hostile_paths(target):
                data = [file_data(path) if p.get("component") in ("Image", "Video") else
                        [file_data(path)] if p.get("component") == "File" else None
                        for p in spec["parameters"]]
                reply = client.post(f"/gradio_api/call{name}", json={"data": data})
                assert reply.status_code == 403, (name, path, reply.status_code, reply.text[:300])
    assert secret_leaked(target.cache) == []


def test_the_original_attack_payload_is_refused(target: Target) -> None:
    body = {"data": ["a cat", {"path": "/proc/self/environ", "meta": {"_type": "gradio.FileData"}}, None]}
    for route in ("/gradio_api/call/rank", "/gradio_api/run/rank"):
        reply = httpx.post(f"{target.url}{route}", json=body, timeout=30)
        assert reply.status_code in (403, 404), reply.text[:300]
        assert TOKEN not in reply.text and SECRET not in reply.text
    assert secret_leaked(target.cache) == []


def test_file_route_serves_no_server_file_and_fetches_no_url(target: Target) -> None:
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for path in ["/proc/self/environ", "/etc/passwd", str(target.outside), str(target.media / "link-out.png"),
                     str(target.cache / "link-out.png")]:
            reply = client.get(f"/gradio_api/file={path}")
            assert reply.status_code == 403, (path, reply.status_code)
            assert SECRET not in reply.text and TOKEN not in reply.text
        reply = client.get("/gradio_api/file=http://127.0.0.1:1/secret")
        assert reply.status_code == 403
        # The example media stay public (the Playground shows them).
        example = sorted((ROOT / "assets" / "examples" / "images").iterdir())[0]
        assert client.get(f"/gradio_api/file={example}").status_code == 200


def test_a_real_upload_still_passes(target: Target) -> None:
    """The guard refuses only foreign paths: a file uploaded through /gradio_api/upload is accepted."""
    image = sorted((ROOT / "assets" / "examples" / "images").iterdir())[0]
    with httpx.Client(base_url=target.url, timeout=30) as client:
        uploaded = client.post("/gradio_api/upload", files={"files": (image.name, image.read_bytes())})
        assert uploaded.status_code == 200, uploaded.text
        path = uploaded.json()[0]
        fn_index, inputs = file_dependencies(target.url)[0]
        body = {"data": payload(inputs, path), "fn_index": fn_index, "session_hash": "honest0001"}
        reply = client.post("/gradio_api/queue/join", json=body)
        assert reply.status_code == 200, reply.text[:300]
