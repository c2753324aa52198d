"""Restarts: `python app.py` killed with SIGKILL mid-rollout comes back on the last stable version
and shows the interrupted rollout; after a promotion, a clean restart serves the promoted one."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RANK = {"query": "a cat", "documents": ["Cats purr.", "Rockets fly.", "Coffee is hot."]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class App:
    """One `python app.py` subprocess on a loopback port; stopped by its own pid only."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "app.py", "--port", self.url.rsplit(":", 1)[1], "--data-dir", str(data_dir),
                   "--admin-token", TOKEN]
        self._log = log.open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"app.py exited with {self.process.returncode}"
            try:
                answer = self.http.get("/readyz")
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"app.py not ready after {timeout_s} s")

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, path, headers=AUTH, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json()

    def wait_state(self, states: set[str], timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.admin("GET", "/admin/status")
            if status["state"] in states:
                return status
            time.sleep(0.25)
        raise AssertionError(f"rollout never reached {states}: {status}")

    def rank(self) -> str:
        answer = self.http.post("/v1/rerank", json=RANK)
        assert answer.status_code == 200, answer.text
        return answer.headers["X-Model-Version"]

    def stop(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.http.close()
        self._log.close()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[App]]:
    """Started apps, each stopped (SIGKILL if still running) after the test."""
    started: list[App] = []
    yield started
    for app in started:
        app.stop(signal.SIGKILL)


def start(apps: list[App], data_dir: Path) -> App:
    app = App(data_dir, data_dir.parent / "app.log")
    apps.append(app)
    app.wait_ready()
    return app


def test_killed_mid_rollout_comes_back_on_the_last_stable_then_serves_what_was_promoted(
        tmp_path: Path, apps: list[App]) -> None:
    data = tmp_path / "data"
    first = start(apps, data)
    assert first.rank() == "mini-v1"
    plan = [{"share": 5, "seconds": 60}, {"share": 100}]
    rollout = first.admin("POST", "/admin/updates", json={"path": "models/mini-v2", "plan": plan})
    status = first.wait_state({"rolling_out", "rolled_back", "failed"})
    assert (status["state"], status["share"]) == ("rolling_out", 5.0)
    first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL

    second = start(apps, data)
    assert second.wait_ready()["stable"] == "mini-v1" and second.rank() == "mini-v1"
    status = second.admin("GET", "/admin/status")
    assert (status["light"], status["state"], status["last_outcome"]) == ("red", "interrupted", "interrupted")
    assert status["rollout_id"] == rollout["id"] and "models/mini-v2" in status["banner"]
    assert status["events"][0]["kind"] == "interrupted" and status["events"][0]["level"] == "alert"
    audit = second.admin("GET", "/admin/audit")["entries"]
    assert any(e["action"] == "hot_update" and e["target"] == "models/mini-v2" and e["outcome"] == "started"
               for e in audit)
    models = {m["id"]: m["state"] for m in second.http.get("/v1/models").json()["data"]}
    assert models == {"mini-v1": "serving"}
    assert second.admin("POST", "/admin/rollout/acknowledge")["light"] == "green"

    second.admin("POST", "/admin/updates", json={"path": "models/mini-v2", "plan": [{"share": 100}]})
    status = second.wait_state({"promoted", "rolled_back", "failed"})
    assert (status["state"], status["stable"]) == ("promoted", "mini-v2")
    second.stop(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM, not -SIGKILL.
    assert second.process.returncode == -signal.SIGTERM

    third = start(apps, data)
    assert third.wait_ready()["stable"] == "mini-v2" and third.rank() == "mini-v2"
    status = third.admin("GET", "/admin/status")
    assert (status["light"], status["state"]) == ("green", "idle")
    assert [e["action"] for e in third.admin("GET", "/admin/audit")["entries"]][:3] == [
        "hot_update", "acknowledge", "hot_update"]
