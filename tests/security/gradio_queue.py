"""A minimal client of Gradio's queue API (what the page itself speaks), for attack tests."""
from __future__ import annotations

import json
import time
from typing import Any

import httpx


def component_defaults(config: dict[str, Any]) -> dict[int, Any]:
    return {c["id"]: c.get("props", {}).get("value") for c in config["components"]}


def call(client: httpx.Client, fn_index: int, data: list[Any], session: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Joins the queue as the page would and returns the completed message's output (or the error)."""
    joined = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                        "event_data": None, "trigger_id": None})
    if joined.status_code != 200:
        return {"refused": joined.status_code, "text": joined.text}
    event_id = joined.json()["event_id"]
    deadline = time.monotonic() + timeout_s
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}, timeout=timeout_s) as stream:
        for line in stream.iter_lines():
            if time.monotonic() > deadline:
                break
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                return message.get("output") or {}
            if message.get("msg") == "close_stream":
                break
    raise AssertionError(f"no answer for fn {fn_index} within {timeout_s}s")


def call_by_index(client: httpx.Client, config: dict[str, Any], fn_index: int, session: str,
                  overrides: dict[int, Any] | None = None) -> dict[str, Any]:
    """Calls a dependency with every input at its component's default value (or an override by position)."""
    dep = next(d for d in config["dependencies"] if d["id"] == fn_index)
    defaults = component_defaults(config)
    data = [defaults.get(i) for i in dep["inputs"]]
    for position, value in (overrides or {}).items():
        data[position] = value
    return call(client, fn_index, data, session)
