"""Issue 8 (bounded resources): the console's Gradio queue is bounded by --max-queue, like the REST
admission queue. Events past it are refused at once as "queue full", never held for ever, and
liveness keeps answering."""
from __future__ import annotations

from pathlib import Path

import httpx
from gradio_client import Client

from tests.security.app_process import AppProcess
from tests.test_faults import copy_model


def test_the_console_queue_is_bounded_and_refuses_when_full(tmp_path: Path) -> None:
    slow = copy_model("models/mini-v1", tmp_path / "mini-slow", fault_slowdown=8.0)  # ~0.5 s a rank
    app = AppProcess(tmp_path, ["--model", str(slow), "--max-queue", "1"])
    try:
        client = Client(app.url, verbose=False)
        jobs = [client.submit(f"query {i}", None, f"doc {i}\nother {i}", None, "", 0, api_name="/rank")
                for i in range(16)]
        outcomes = []
        for job in jobs:
            try:
                data, _ = job.result(timeout=300)
                outcomes.append("ok" if data["n_documents"] == 2 else repr(data))
            except Exception as exc:  # noqa: BLE001 - the refusal is what we look for
                outcomes.append(str(exc))
        refused = [o for o in outcomes if "Queue is full" in o]
        assert refused, outcomes  # 4 run (RANK_CONCURRENCY), 1 waits, the rest are refused at once
        assert outcomes.count("ok") + len(refused) == len(jobs), outcomes  # nothing else went wrong
        assert outcomes.count("ok") >= 5
        assert httpx.get(f"{app.url}/healthz", timeout=10).status_code == 200
    finally:
        app.stop()
