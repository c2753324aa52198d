"""Issue 9, "The Gradio API": gradio_client users call /rank and /compare with the query and every
document as parameters (no session), get JSON data plus the HTML view, and see nothing else.
Runs the README's example verbatim (only the URL changes) against a real `app.py`."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.e2e.conftest import _wait_ready, free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "gradio-api-token-41d2"
IMAGES = ROOT / "assets" / "examples" / "images"
VIDEOS = ROOT / "assets" / "examples" / "videos"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("gradio-api")
    port, log = free_port(), folder / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "RERANKER_ADMIN_TOKEN": TOKEN}
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(folder / "data"),
               "--model", "models/mini-v1"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- gradio-client-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its gradio_client example"
    return block.group(1)


def test_the_readme_example_runs_verbatim(url: str, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 5
    monkeypatch.chdir(ROOT)
    exec(compile(code.replace("http://127.0.0.1:7860/", url + "/"), "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith("mini-v1 [(0, ")  # the sleeping cat first


def test_only_rank_and_compare_are_listed(url: str) -> None:
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/compare", "/rank"] and not api["unnamed_endpoints"]
    names = [p["parameter_name"] for p in api["named_endpoints"]["/rank"]["parameters"]]
    assert names[:4] == ["query", "query_file", "documents", "document_files"]


def test_rank_takes_every_document_as_parameters_without_a_session(url: str) -> None:
    client = Client(url, verbose=False)
    files = [handle_file(str(IMAGES / "coffee.jpg")), handle_file(str(VIDEOS / "cat_pan.mp4"))]
    data, html = client.predict("a cat", handle_file(str(IMAGES / "query_cat_face.jpg")), "stock markets\ntomato soup",
                                files, "", 2, api_name="/rank")
    assert data["model"] == "mini-v1" and data["n_documents"] == 4 and len(data["results"]) == 2
    assert data["results"][0]["index"] == 3 and "cat_pan.mp4" in data["results"][0]["document"]
    assert 'data-testid="results"' in html
    fresh = Client(url, verbose=False)  # a second client, no earlier calls: still works
    again, _ = fresh.predict("a cat", None, "a sleeping cat\nstock markets", None, "", 0, api_name="/rank")
    assert [r["index"] for r in again["results"]] == [0, 1]


def test_compare_returns_both_rankings_and_the_changes(url: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as admin:
        loading = admin.post("/admin/versions", json={"path": "models/mini-v2"})
        assert loading.status_code == 202, loading.text
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "mini-v2" not in {
                m["id"] for m in admin.get("/v1/models").json()["data"] if m["state"] in ("ready", "serving")}:
            time.sleep(0.5)
    data, html = Client(url, verbose=False).predict(
        "a cat", None, "a sleeping cat\nstock markets\na cup of coffee", None, "mini-v1", "mini-v2", 3,
        api_name="/compare")
    assert data["a"]["model"] == "mini-v1" and data["b"]["model"] == "mini-v2"
    assert sorted(c["index"] for c in data["changes"]) == [0, 1, 2]
    assert 'data-testid="compare"' in html


def test_bad_input_is_a_clear_error_not_a_traceback(url: str) -> None:
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="documents is empty"):
        client.predict("a cat", None, "", None, "", 0, api_name="/rank")
    with pytest.raises(Exception, match="query is empty"):
        client.predict("", None, "doc", None, "", 0, api_name="/rank")
