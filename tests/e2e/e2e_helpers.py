"""Helpers shared by the browser tests."""
from __future__ import annotations

import base64
import json
import mimetypes
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
from playwright.sync_api import Browser, Page, expect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"
TOKEN = "e2e-admin-token"


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    data_dir: Path
    log: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


SIZES = {"desktop": (1440, 900), "phone": (390, 844)}  # the layouts every look test checks


def open_page(browser: Browser, url: str, size: str, scheme: str) -> Iterator[Page]:
    """One page at a SIZES layout in a light or dark colour scheme, its banner shown; closed after."""
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("[data-testid=banner]")
    yield page
    context.close()


def open_tab(page: Page, name: str) -> None:
    """Clicks the tab; on a narrow screen Gradio moves tabs that do not fit into a "More tabs" menu."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.is_visible():
        tab.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.get_by_role("button", name=name, exact=True).click()


def sign_in(page: Page, token: str) -> None:
    """Signs this page's session in on the Operator tab (the server remembers the session)."""
    open_tab(page, "Operator")
    field = page.locator("#op-token input")
    field.fill(token)
    field.press("Enter")
    expect(page.locator("[data-testid=auth]")).to_have_attribute("data-signed-in", "true")


def data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def api_item(raw: dict[str, Any] | str) -> dict[str, Any] | str:
    """An example item (media as paths relative to assets/examples) in the REST shape."""
    if isinstance(raw, str):
        return raw
    return {k: (data_uri(EXAMPLES / v) if k in ("image", "video") else v) for k, v in raw.items()}


def first_example() -> dict[str, Any]:
    return json.loads((EXAMPLES / "demos.json").read_text())[0]


def top_index(page: Page, results: str = "[data-testid=results]") -> int:
    return int(page.locator(f"{results} li[data-rank='1']").get_attribute("data-index") or -1)


@contextmanager
def live_traffic(server: Server, clients: int = 3, max_seconds: float = 120.0) -> Iterator[list[int]]:
    """REST traffic from several users with fresh queries while the block runs (the rollout gates
    decide on live evidence). Yields [sent, failed]; stops by itself after max_seconds."""
    counts = [0, 0]
    stop = threading.Event()
    deadline = time.monotonic() + max_seconds

    def run(user: int) -> None:
        with server.client() as client:
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                n += 1
                body = {"query": f"query {user}-{n} about cats", "documents": [f"doc {user}-{n} cat", f"doc {user}-{n} car"]}
                response = client.post("/v1/rerank", json=body, headers={"X-User-Id": f"user-{user}-{n}"})
                counts[0] += 1
                counts[1] += response.status_code != 200

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield counts
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
