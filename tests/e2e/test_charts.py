"""Issue 11, items 4, 5 and 7 in the browser: the Experiments plots have a time axis with round
ticks, y ticks with units, a legend per version and a tooltip per point; they read in light and
dark mode (4.5:1 for every label) and take the phone's width at a readable height, without the
page or the per-version table scrolling sideways (on a phone each row becomes a labelled card).
Every figure and the decision name the window both versions are compared
over. The page never starts blank: panes that wait for
data show a skeleton first.

Screenshots: /tmp/e2e_look/charts-{desktop,phone}-{light,dark}.png (the whole Experiments tab) and
latency-{…}.png (the latency plot alone)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.contrast import worst
from tests.e2e.e2e_helpers import SIZES, Server, open_page, open_tab, sign_in

SHOTS = Path("/tmp/e2e_look")
CHARTS = {"latency-chart": "ms", "share-chart": "%", "rate-chart": "req/s", "error-chart": "%"}
VERSIONS = ("mini-v1", "mini-v2")
MIN_CONTRAST = 4.5
TRAFFIC_DEADLINE_S = 240.0
FIRST_REPORT_TIMEOUT_MS = 120_000  # the first report scores both versions on the labelled set
REPORT_TIMEOUT_S = 180.0


def _buckets(server: Server) -> dict[str, int]:
    """How many time buckets of the page's default window (600 s) each version has requests in."""
    with server.admin() as admin:
        # the first report also scores both versions on the labelled set: slow on a busy machine
        series = admin.get("/admin/experiments", params={"window_s": 600}, timeout=REPORT_TIMEOUT_S).json()["series"]
    return {v: len({p["bucket_start"] for p in series if p["version"] == v and p["count"]}) for v in VERSIONS}


@pytest.fixture(scope="module")
def two_arms(server: Server) -> None:
    """mini-v2 beside mini-v1 under a 50/50 policy, with requests on both spread over at least two
    time buckets (so every line has two points or more)."""
    with server.admin() as admin:
        assert admin.post("/admin/versions", json={"path": "models/mini-v2"}).status_code == 202
        deadline = time.monotonic() + TRAFFIC_DEADLINE_S
        while {m["id"]: m["state"] for m in admin.get("/v1/models").json()["data"]}.get("mini-v2") != "ready":
            assert time.monotonic() < deadline, "mini-v2 did not load"
            time.sleep(0.2)
        policy = {"weights": {"mini-v1": 50, "mini-v2": 50}, "sticky": False}
        assert admin.put("/admin/traffic", json=policy).status_code == 200
    with server.client() as client:
        n = 0
        while min(_buckets(server).values()) < 2:
            assert time.monotonic() < deadline, f"traffic did not reach two buckets: {_buckets(server)}"
            for _ in range(5):
                n += 1
                body = {"query": f"a cat #{n}", "documents": ["a sleeping cat", "a red car", "a cup of coffee"]}
                assert client.post("/v1/rerank", json=body).status_code == 200


@pytest.fixture(params=[(s, c) for s in SIZES for c in ("light", "dark")], ids=lambda p: f"{p[0]}-{p[1]}")
def view(request: pytest.FixtureRequest, browser: Browser, server: Server, two_arms: None) -> Iterator[tuple[Page, str, str]]:
    size, scheme = request.param
    for page in open_page(browser, server.url, size, scheme):
        yield page, size, scheme


def test_first_load_shows_skeletons_not_blank_panes(browser: Browser, server: Server) -> None:
    for page in open_page(browser, server.url, "desktop", "light"):
        expect(page.locator("#pg-results [data-testid=skeleton], [data-testid=results] [data-testid=skeleton]")
               .first).to_be_visible()
        sign_in(page, server.token)
        open_tab(page, "Experiments")  # each pane holds a skeleton or its data, never nothing
        for pane in ("ex-latency", "ex-share", "ex-rate", "ex-errors", "ex-scores", "ex-stats"):
            expect(page.locator(f"#{pane} [data-testid=skeleton], #{pane} figure, #{pane} table").first).to_be_attached()


def test_plots_have_axes_legends_tooltips_and_read_well(view: tuple[Page, str, str], server: Server) -> None:
    page, size, scheme = view
    SHOTS.mkdir(exist_ok=True)
    sign_in(page, server.token)
    open_tab(page, "Experiments")
    latency = page.locator("[data-testid=latency-chart]")
    expect(latency.locator("g[data-version=mini-v2]").first).to_be_attached(timeout=FIRST_REPORT_TIMEOUT_MS)
    expect(page.locator("#ex-stats [data-testid=note]").first).to_contain_text("since the traffic policy changed at")
    expect(page.locator("[data-testid=decision-window]")).to_contain_text("since the traffic policy changed at")

    viewport_width = SIZES[size][0]
    for testid, unit in CHARTS.items():
        chart = page.locator(f"[data-testid={testid}]")
        expect(chart.locator("[data-testid=x-tick]").last).to_have_text("now")
        assert chart.locator("[data-testid=x-tick]").count() >= 3, testid
        y_ticks = chart.locator("[data-testid=y-tick]").all_inner_texts()
        assert len(y_ticks) >= 3 and all(t.endswith(unit) for t in y_ticks), (testid, y_ticks)
        for version in VERSIONS:
            expect(chart.locator(f"[data-testid=legend] [data-version={version}]")).to_be_visible()
            assert chart.locator(f"g[data-version={version}] .rr-dot title").count() >= 1, (testid, version)
        area = chart.locator(".rr-area").bounding_box()
        box = chart.bounding_box()
        assert area is not None and box is not None
        assert area["height"] >= 200, (testid, area)
        if size == "phone":
            assert box["width"] >= 0.9 * viewport_width, (testid, box)
        found = worst(page, f"[data-testid={testid}] .rr-tick, [data-testid={testid}] figcaption,"
                            f" [data-testid={testid}] .rr-key")
        assert found["ratio"] >= MIN_CONTRAST, (testid, found)
    tooltip = latency.locator("g[data-version=mini-v1] .rr-dot title").first.text_content() or ""
    assert "mini-v1" in tooltip and "UTC" in tooltip and "ms" in tooltip
    expect(page.locator("[data-testid=score-chart] g[data-version=mini-v2] rect").first).to_be_attached()

    stats = page.locator("[data-testid=version-stats]")
    widths = stats.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert widths[0] <= widths[1] + 1, f"the per-version table is cut off: {widths}"
    decision = page.locator("[data-testid=decision-table]")
    expect(decision.locator("tr[data-criterion]").first).to_be_attached()
    widths = decision.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert widths[0] <= widths[1] + 1, f"the decision table is cut off or scrolls sideways: {widths}"
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= viewport_width + 1, f"the page scrolls sideways: {scroll_width} px"
    page.screenshot(path=str(SHOTS / f"charts-{size}-{scheme}.png"), full_page=True)
    latency.scroll_into_view_if_needed()
    latency.screenshot(path=str(SHOTS / f"latency-{size}-{scheme}.png"))
