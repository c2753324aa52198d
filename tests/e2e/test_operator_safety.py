"""Issue 11, operator safety and truth: commands that cannot apply are disabled; a hot update to a
version already loaded beside offers to roll that one out (no second copy); "Promote now" asks
first and says which checks are still pending; after promotion the panel shows no candidate, no
gate left "waiting", and the unloaded version is gone from the list."""
from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.e2e.e2e_helpers import Server, sign_in

ROLLOUT_TIMEOUT_MS = 120_000


def _load_beside(server: Server, path: str, version: str) -> None:
    with server.admin() as admin:
        response = admin.post("/admin/versions", json={"path": path})
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if {m["id"]: m["state"] for m in admin.get("/v1/models").json()["data"]}.get(version) == "ready":
                return
            time.sleep(0.5)
    raise AssertionError(f"{version} did not load")


def test_promote_asks_first_and_the_panel_tells_the_truth_afterwards(page: Page, server: Server) -> None:
    sign_in(page, server.token)
    expect(page.locator("[data-testid=state]")).to_have_attribute("data-state", "idle")
    for command in ("pause", "promote", "rollback", "acknowledge"):
        expect(page.locator(f"#op-{command}")).to_be_disabled()

    _load_beside(server, "models/mini-v2", "mini-v2")
    field = page.locator("#op-path input")
    field.fill("models/mini-v2")
    field.press("Enter")
    page.locator("#op-update").click()
    expect(page.locator("[data-testid=op-message]")).to_have_attribute("data-outcome", "offer")
    offer = page.locator("#op-roll-out-loaded")
    expect(offer).to_contain_text("mini-v2")
    offer.click()
    expect(page.locator("[data-testid=op-message]")).to_have_attribute("data-outcome", "ok")

    promote = page.locator("#op-promote")
    expect(promote).to_be_enabled(timeout=ROLLOUT_TIMEOUT_MS)
    expect(page.locator("[data-testid=candidate]")).to_have_text("mini-v2")
    page.screenshot(path="/tmp/e2e_operator_steps.png", full_page=True)
    promote.click()
    confirm = page.locator("[data-testid=confirm]")
    expect(confirm).to_contain_text("Promote mini-v2 now")
    page.locator("#op-confirm-no").click()
    expect(confirm).to_be_hidden()
    assert page.locator("[data-testid=state]").get_attribute("data-state") in ("rolling_out", "validating", "loading")
    promote.click()
    expect(confirm).to_be_visible()
    page.locator("#op-confirm-yes").click()

    expect(page.locator("[data-testid=light]")).to_have_attribute("data-light", "green", timeout=ROLLOUT_TIMEOUT_MS)
    expect(page.locator("[data-testid=stable]")).to_have_text("mini-v2")
    expect(page.locator("[data-testid=candidate]")).to_have_count(0)
    expect(page.locator("[data-testid=gates] tr[data-outcome=pending]")).to_have_count(0)
    expect(page.locator("[data-testid=versions] tr[data-version=mini-v1]")).to_have_count(0, timeout=ROLLOUT_TIMEOUT_MS)
    assert page.locator("[data-testid=versions] tr[data-version='mini-v2~2']").count() == 0
    expect(promote).to_be_disabled()
    page.screenshot(path="/tmp/e2e_operator_promoted.png", full_page=True)
