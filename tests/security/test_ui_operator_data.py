"""Issue 8, item 2: the console gives operator data only to a session signed in with the admin token.

Every Gradio event of a real `app.py` (enumerated from /config, hidden ones included) is called
anonymously through the queue API the page itself uses, with each input at its default value; no
answer may carry the traffic policy, the experiments report, the rollout state, gates, events,
loaded versions or the model directories on disk. A signed-in session does get them (so the checks
would see a leak), and only /rank and /compare are public API endpoints."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e.conftest import _wait_ready, free_port
from tests.security.gradio_queue import call_by_index

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ui-operator-data-token-3c9b"
OPERATOR_MARKERS = (
    re.compile(r"mini-v1: ?\d"),  # the traffic policy's weights as the form shows them
    re.compile(r'data-testid=\\?"(versions|gates|events|stage|stable|candidate|state|version-stats|decision|'
               r'latency-chart|share-chart|error-chart|score-chart|shadow)\\?"'),
    re.compile(r"data-state="),
    re.compile(re.escape(str(ROOT / "models"))),  # model directories on disk
    re.compile(re.escape(TOKEN)),
)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("operator-data")
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


def leaks(output: Any) -> list[str]:
    text = json.dumps(output)
    return [m.pattern for m in OPERATOR_MARKERS if m.search(text)]


def backend_events(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in config["dependencies"] if d.get("backend_fn")]


def by_name(config: dict[str, Any], api_name: str) -> int:
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def test_no_event_returns_operator_data_to_an_anonymous_session(url: str) -> None:
    config = httpx.get(f"{url}/config", timeout=30).json()
    events = backend_events(config)
    assert len(events) > 20
    found = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for number, dep in enumerate(events):
            output = call_by_index(client, config, dep["id"], f"anon{number:04d}x")
            if leaks(output):
                found[dep.get("api_name")] = leaks(output)
    assert found == {}


def test_a_signed_in_session_sees_operator_data_and_a_wrong_token_does_not(url: str) -> None:
    config = httpx.get(f"{url}/config", timeout=30).json()
    sign_in, refresh, load_form = by_name(config, "sign_in"), by_name(config, "refresh"), by_name(config, "load_form")
    with httpx.Client(base_url=url, timeout=60) as client:
        call_by_index(client, config, sign_in, "wrongtoken01", {0: "not-the-token"})
        assert leaks(call_by_index(client, config, refresh, "wrongtoken01")) == []
        call_by_index(client, config, sign_in, "operator0001", {0: TOKEN})
        assert leaks(call_by_index(client, config, refresh, "operator0001"))
        assert leaks(call_by_index(client, config, load_form, "operator0001"))
        assert leaks(call_by_index(client, config, refresh, "othersession")) == []


def test_only_rank_and_compare_are_public_and_private_names_are_not_callable(url: str) -> None:
    info = httpx.get(f"{url}/gradio_api/info", timeout=30).json()
    assert sorted(info["named_endpoints"]) == ["/compare", "/rank"]
    assert not info.get("unnamed_endpoints")
    config = httpx.get(f"{url}/config", timeout=30).json()
    public = {d["api_name"] for d in config["dependencies"] if d.get("api_visibility") == "public"}
    assert public == {"rank", "compare"}
    with httpx.Client(base_url=url, timeout=30) as client:
        for name in ("load_form", "refresh", "refresh_8", "pickers", "lambda", "sign_in"):
            for route in (f"/gradio_api/call/{name}", f"/gradio_api/call/v2/{name}", f"/gradio_api/run/{name}"):
                reply = client.post(route, json={"data": []})
                assert reply.status_code == 404, (route, reply.status_code)
                assert not leaks(reply.text)
