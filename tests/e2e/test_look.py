"""Issue 11: the console reads well in light and dark mode, on a laptop and a phone.

Every layout is screenshotted (1440x900 and 390x844, light and dark, emulated through the
browser's prefers-color-scheme); text that matters — the banner, the scores and "answered by"
line, and the chart labels — must reach a WCAG contrast of 4.5:1 in both modes."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.contrast import worst
from tests.e2e.e2e_helpers import SIZES, Server, open_page, first_example, open_tab, sign_in

SHOTS = Path("/tmp/e2e_look")
MIN_CONTRAST = 4.5


@pytest.fixture(params=[(s, c) for s in SIZES for c in ("light", "dark")], ids=lambda p: f"{p[0]}-{p[1]}")
def view(request: pytest.FixtureRequest, browser: Browser, server: Server) -> Iterator[tuple[Page, str, str]]:
    size, scheme = request.param
    for page in open_page(browser, server.url, size, scheme):
        yield page, size, scheme


def _assert_readable(page: Page, selector: str, what: str) -> None:
    found = worst(page, selector)
    assert found["ratio"] >= MIN_CONTRAST, f"{what}: {found}"


def test_playground_reads_well_and_rank_is_reachable(view: tuple[Page, str, str]) -> None:
    page, size, scheme = view
    SHOTS.mkdir(exist_ok=True)
    assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark") or \
        page.evaluate("document.documentElement.classList.contains('dark')") == (scheme == "dark")
    page.locator("#pg-example-0").click()
    expect(page.locator("[data-testid=documents]")).to_have_attribute("data-count", str(len(first_example()["documents"])))
    rank = page.locator("#pg-rank")
    box = rank.bounding_box()
    assert box is not None and box["y"] + box["height"] <= SIZES[size][1], f"Rank is off screen: {box}"
    rank.click()
    expect(page.locator("[data-testid=results] li").first).to_be_visible()
    page.screenshot(path=str(SHOTS / f"playground-{size}-{scheme}.png"), full_page=True)
    _assert_readable(page, "[data-testid=banner] .rr-banner-text", "banner")
    _assert_readable(page, "[data-testid=results] .rr-score", "scores")
    _assert_readable(page, "[data-testid=result-meta]", "answered by")
    _assert_readable(page, "[data-testid=results] .rr-label", "document labels")


def test_operator_and_experiments_read_well(view: tuple[Page, str, str], server: Server) -> None:
    page, size, scheme = view
    SHOTS.mkdir(exist_ok=True)
    sign_in(page, server.token)
    expect(page.locator("[data-testid=versions]")).to_be_visible()
    page.screenshot(path=str(SHOTS / f"operator-{size}-{scheme}.png"), full_page=True)
    _assert_readable(page, "[data-testid=banner] .rr-banner-text", "operator banner")
    _assert_readable(page, "[data-testid=versions] td", "versions table")
    open_tab(page, "Experiments")
    expect(page.locator("[data-testid=version-stats]")).to_be_visible(timeout=90_000)
    page.screenshot(path=str(SHOTS / f"experiments-{size}-{scheme}.png"), full_page=True)
    _assert_readable(page, "[data-testid=version-stats] td", "experiment table")
    _assert_readable(page, "[data-testid=latency-chart] figcaption, [data-testid=latency-chart] .rr-tick,"
                           " [data-testid=share-chart] .rr-tick, [data-testid=share-chart] .rr-key", "chart labels")
