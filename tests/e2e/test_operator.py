"""Operator tab in the browser (issue 3): hot update yellow -> green; a failing candidate -> red ->
acknowledge -> green; the banner on every tab; wrong tokens refused."""
from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.e2e_helpers import Server, live_traffic, open_tab, sign_in

ROOT = Path(__file__).resolve().parents[2]
SERVER_ARGS = ["--rollout-time-scale", "0.5"]  # the demo plan in ~15 s
ROLLOUT_TIMEOUT_MS = 90_000


def _operator(page: Page, token: str) -> None:
    sign_in(page, token)


def _choose_path(page: Page, path: str) -> None:
    field = page.locator("#op-path input")
    field.fill(path)
    field.press("Enter")


def _stage_fraction(page: Page) -> float:
    return float(page.locator("[data-testid=stage]").get_attribute("data-fraction") or 0)


def test_wrong_token_is_refused(page: Page, server: Server) -> None:
    open_tab(page, "Operator")
    page.locator("#op-token input").fill("not-the-token")
    page.locator("#op-token input").press("Enter")
    expect(page.locator("[data-testid=auth]")).to_have_attribute("data-refused", "true")
    _choose_path(page, "models/mini-v2")
    page.locator("#op-update").click()
    expect(page.locator("[data-testid=op-message]")).to_have_attribute("data-outcome", "refused")
    expect(page.locator("#op-gates")).to_contain_text("Sign in with the admin token")
    expect(page.locator("[data-testid=banner]")).to_have_attribute("data-public", "true")
    with server.admin() as admin:
        assert admin.get("/admin/status").json()["state"] in ("idle", "starting")


def test_hot_update_turns_yellow_then_green_on_the_new_version(page: Page, server: Server) -> None:
    _operator(page, server.token)
    light = page.locator("[data-testid=light]")
    expect(light).to_have_attribute("data-light", "green")
    _choose_path(page, "models/mini-v2")
    page.locator("#op-plan").get_by_text("demo", exact=True).click()
    with live_traffic(server) as counts:  # live gates decide on real requests
        _watch_update_to_green(page, light)
    assert counts[0] > 0 and counts[1] == 0


def _watch_update_to_green(page: Page, light) -> None:
    page.locator("#op-update").click()
    expect(page.locator("[data-testid=op-message]")).to_have_attribute("data-outcome", "ok")
    expect(light).to_have_attribute("data-light", "yellow")

    open_tab(page, "Playground")
    banner = page.locator("[data-testid=banner]")
    expect(banner).to_have_attribute("data-active", "true")
    expect(banner).to_contain_text("Model upgrade")
    expect(banner).to_have_attribute("data-light", "yellow")

    open_tab(page, "Operator")
    stage = page.locator("[data-testid=stage]")
    expect(stage).to_have_attribute("data-stage", "1", timeout=ROLLOUT_TIMEOUT_MS)
    first = _stage_fraction(page)
    expect(stage).not_to_have_attribute("data-fraction", f"{first:.3f}")
    assert _stage_fraction(page) > first
    page.screenshot(path="/tmp/e2e_operator_rolling.png", full_page=True)
    expect(light).to_have_attribute("data-light", "green", timeout=ROLLOUT_TIMEOUT_MS)
    expect(page.locator("[data-testid=stable]")).to_have_text("mini-v2")
    expect(page.locator("[data-testid=gates] tr[data-outcome=passed]").first).to_be_visible()
    expect(page.locator("[data-testid=events] li").first).to_be_visible()
    expect(page.locator("[data-testid=banner]")).to_have_attribute("data-active", "false")


def shifted_copy(folder: Path, of: str) -> str:
    """A copy of a shipped model whose scores are all 0.05 higher (the fault_score_shift option):
    in same-model mode the golden-set gate fails whichever version serves now."""
    manifest = json.loads((ROOT / "models" / of / "reranker.json").read_text(encoding="utf-8"))
    target = folder / f"{of}-shifted"
    target.mkdir()
    (target / "reranker.json").write_text(json.dumps({**manifest, "fault_score_shift": 0.05}), encoding="utf-8")
    return str(target)


def test_failing_candidate_turns_red_until_acknowledged(page: Page, server: Server, tmp_path: Path) -> None:
    with server.admin() as admin:  # not about that click: submit through the admin API
        status = admin.get("/admin/status").json()
        stable = status["stable"]
        if status["light"] == "red":  # whatever an earlier test left: this test builds its own start
            admin.post("/admin/rollout/acknowledge")
        candidate = shifted_copy(tmp_path, stable.split("~")[0])
        response = admin.post("/admin/updates", json={"path": candidate, "plan": "demo", "mode": "same-model"})
        assert response.status_code == 202, response.text
    _operator(page, server.token)
    light = page.locator("[data-testid=light]")
    expect(light).to_have_attribute("data-light", "red", timeout=ROLLOUT_TIMEOUT_MS)
    expect(page.locator("[data-testid=banner]")).to_have_attribute("data-light", "red")
    expect(page.locator("[data-testid=banner]")).to_contain_text("acknowledge")
    expect(page.locator("[data-testid=gates] tr[data-outcome=failed]").first).to_be_visible()
    page.screenshot(path="/tmp/e2e_operator_red.png", full_page=True)
    page.locator("#op-acknowledge").click()
    expect(page.locator("[data-testid=op-message]")).to_have_attribute("data-outcome", "ok")
    expect(light).to_have_attribute("data-light", "green")
    expect(page.locator("[data-testid=stable]")).to_have_text(stable)
