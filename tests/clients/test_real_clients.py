"""The real client libraries (cohere v1 and v2, LangChain's and LlamaIndex's CohereRerank,
LlamaIndex's JinaRerank) against a real `python app.py` server on the mini model.

They run in .venv-clients (scripts/setup.sh --test makes it; their pins clash with the app's),
through tests/clients/drive.py; each scenario prints what the library returned.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
DRIVE = Path(__file__).with_name("drive.py")
DOCS = ["a rocket launching into space", "a tabby cat resting", "a cup of espresso"]
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`python app.py` on mini-v1 with JSON logs; yields (url, log file)."""
    if not CLIENT_PYTHON.exists():
        pytest.fail(f"{CLIENT_PYTHON} is missing: run `bash scripts/setup.sh --test` (./test.sh does)")
    folder = tmp_path_factory.mktemp("clients-server")
    port, log = free_port(), folder / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--model", "models/mini-v1", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(folder / "data"), "--admin-token", "t", "--log-format", "json"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def server_url(server: tuple[str, Path]) -> str:
    return server[0]


def drive(url: str, scenario: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update({"LANGCHAIN_TRACING_V2": "false", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost"})
    done = subprocess.run([str(CLIENT_PYTHON), str(DRIVE), url, scenario], capture_output=True, text=True,
                          timeout=120, env=env, cwd=str(DRIVE.parent))
    assert done.returncode == 0, f"{scenario} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cohere_client_v2(server_url: str) -> None:
    out = drive(server_url, "cohere_v2")
    assert out["indices"][0] == 1 and len(out["indices"]) == 2
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert out["search_units"] == 1 and out["input_tokens"] > 0


def test_cohere_client_v2_max_tokens_per_doc_cuts_the_document(server_url: str) -> None:
    out = drive(server_url, "cohere_v2_max_tokens")
    assert out["cut"][1] == 4 + 8 < out["whole"][1] == 4 + 13  # MiniLM tokens; the cat is cut off
    assert out["cut"][0] < out["whole"][0]


def test_cohere_client_v1(server_url: str) -> None:
    out = drive(server_url, "cohere_v1")
    assert out["indices"][0] == 1 and out["documents"][0] == DOCS[1]


def test_langchain_cohere_rerank(server_url: str) -> None:
    out = drive(server_url, "langchain_cohere")
    assert out["texts"][0] == DOCS[1] and len(out["texts"]) == 2


def test_llamaindex_cohere_rerank(server_url: str) -> None:
    out = drive(server_url, "llamaindex_cohere")
    assert out["texts"][0] == DOCS[1] and len(out["texts"]) == 2


def test_llamaindex_jina_rerank_with_its_default_model_name(server_url: str) -> None:
    out = drive(server_url, "llamaindex_jina")
    assert out["texts"][0] == DOCS[1] and len(out["texts"]) == 2


def test_llamaindex_jina_sees_a_refusal_as_its_own_error(server_url: str) -> None:
    out = drive(server_url, "llamaindex_jina_error")
    assert out["raised"] == "RuntimeError" and "query" in out["message"]


def readme_curl(port_url: str) -> list[str]:
    """The REST API section's first curl, verbatim except for the server's address."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(curl -s http://127\.0\.0\.1:7860/v1/rerank.*?)```", readme, re.S)
    assert block, "README's REST API curl example is missing"
    return [part.replace("http://127.0.0.1:7860", port_url) for part in shlex.split(block.group(1))]


def test_readme_curl_runs_verbatim(server_url: str) -> None:
    done = subprocess.run(readme_curl(server_url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] == "mini-v1" and len(answer["results"]) == 2, answer
    assert answer["results"][0]["document"] == {"text": "a tabby cat asleep on a sofa"}
    assert answer["usage"]["total_tokens"] > 0


def test_http_semantics_with_the_gradio_ui_mounted(server_url: str) -> None:
    """The Gradio app mounted at / must not swallow the REST API's wrong methods or unknown paths."""
    wrong = httpx.get(f"{server_url}/v1/rerank")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST", wrong.text
    assert "GET" in wrong.json()["detail"] and wrong.json()["error"]["type"] == "MethodNotAllowed"
    assert httpx.delete(f"{server_url}/healthz").status_code == 405
    assert httpx.put(f"{server_url}/v2/rerank").status_code == 405
    unknown = httpx.get(f"{server_url}/v1/no-such-route")
    assert unknown.status_code == 404 and "no-such-route" in unknown.json()["detail"]
    head = httpx.head(f"{server_url}/healthz")
    assert head.status_code == 200 and head.headers["x-request-id"]
    echoed = httpx.get(f"{server_url}/readyz", headers={"X-Request-Id": "probe-7"})
    assert echoed.headers["x-request-id"] == "probe-7"
    assert httpx.get(f"{server_url}/v1/models/mini-v1").json()["state"] == "serving"
    assert httpx.get(f"{server_url}/").status_code == 200  # the console still answers at /


def test_json_logs_one_format_and_an_access_line_per_request(server: tuple[str, Path]) -> None:
    url, log = server
    answer = httpx.post(f"{url}/v1/rerank", json={"query": "a cat", "documents": ["a tabby cat"]},
                        headers={"X-Request-Id": "json-log-1"})
    assert answer.status_code == 200
    assert httpx.get(f"{url}/v1/nope").status_code == 404
    deadline = time.monotonic() + 10
    while "json-log-1" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    [ranked] = [r for r in access if r["request_id"] == "json-log-1"]
    assert (ranked["method"], ranked["path"], ranked["status"], ranked["version"]) == \
        ("POST", "/v1/rerank", 200, "mini-v1")
    assert ranked["latency_ms"] > 0
    assert any(r["path"] == "/v1/nope" and r["status"] == 404 for r in access)
    assert any("Serving on" in r["message"] for r in records)
