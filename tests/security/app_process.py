"""A real `app.py` process for the resource tests (issue 8, items 4 and 5)."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 300.0  # start-up on a shared 2-core machine under load can take minutes
WORDS = ["red", "blue", "green", "car", "dog", "tree", "house", "river", "mountain", "city", "night", "cat", "bird", "boat", "road", "field", "window", "bridge", "forest", "snow", "lake", "garden", "street", "train", "market"]


class AppProcess:
    def __init__(self, folder: Path, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "app.log"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "RERANKER_ADMIN_TOKEN": "resource-test-token"}
        command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", str(folder / "data"), "--model", "models/mini-v1", *args]
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, READY_TIMEOUT_S, "app.py ready", every_s=0.5)
        except AssertionError:
            self.process.kill()
            raise AssertionError(f"app.py not ready after {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}") from None

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        return self.process.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the series `name` whose labels include `labels` (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def heavy_body(seed: int, documents: int = 100, words: int = 300) -> dict[str, Any]:
    """A rerank body that takes the mini model a while and misses every cache."""
    rnd = random.Random(seed)
    return {
        "query": " ".join(rnd.choice(WORDS) for _ in range(12)),
        "documents": [" ".join(rnd.choice(WORDS) for _ in range(words)) + f" {seed}-{i}" for i in range(documents)],
    }


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s: {what}")
