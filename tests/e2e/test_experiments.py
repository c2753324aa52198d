"""Experiments and Compare tabs in the browser (issue 4): a 50/50 split set from the page, traffic
from several users, both versions in the plots; two versions ranked side by side."""
from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.e2e.e2e_helpers import Server, api_item, first_example, open_tab, sign_in

VERSIONS = ("mini-v1", "mini-v2")
FIRST_REPORT_TIMEOUT_MS = 90_000  # the first decision scores both versions on the labelled set


def _load_second_version(server: Server) -> None:
    with server.admin() as admin:
        response = admin.post("/admin/versions", json={"path": "models/mini-v2"})
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = {m["id"]: m["state"] for m in admin.get("/v1/models").json()["data"]}
            if states.get("mini-v2") in ("ready", "serving"):
                return
            time.sleep(0.5)
    raise AssertionError(f"mini-v2 did not load: {states}")


def _send_traffic(server: Server, users: int) -> set[str]:
    body = {"query": "a cat", "documents": ["a sleeping cat", "stock markets", "a cup of coffee"]}
    with server.client() as client:
        return {client.post("/v1/rerank", json=body, headers={"X-User-Id": f"user-{i}"}).headers["X-Model-Version"]
                for i in range(users)}


def test_split_traffic_from_the_page_and_see_both_versions_plotted(page: Page, server: Server) -> None:
    _load_second_version(server)
    sign_in(page, server.token)
    open_tab(page, "Experiments")
    weights = page.locator("#ex-weights textarea")
    expect(weights).to_have_value("mini-v1: 100")
    page.locator("#ex-split").click()
    expect(weights).to_have_value("mini-v1: 50, mini-v2: 50")
    page.locator("#ex-apply").click()
    expect(page.locator("[data-testid=op-message]")).to_have_attribute("data-outcome", "ok")
    with server.admin() as admin:
        assert admin.get("/admin/traffic").json()["weights"] == {"mini-v1": 50, "mini-v2": 50}

    assert _send_traffic(server, users=24) == set(VERSIONS)
    first_report = page.locator("[data-testid=latency-chart] g[data-version=mini-v2]").first
    expect(first_report).to_be_attached(timeout=FIRST_REPORT_TIMEOUT_MS)
    for chart in ("latency-chart", "share-chart", "score-chart"):
        for version in VERSIONS:
            expect(page.locator(f"[data-testid={chart}] g[data-version={version}]").first).to_be_attached()
    for version in VERSIONS:
        assert int(page.locator(f"[data-testid=version-stats] tr[data-version={version}]").get_attribute("data-count")) > 0
    decision = page.locator("[data-testid=decision]")
    expect(decision).to_have_attribute("data-candidate", "mini-v2")
    page.screenshot(path="/tmp/e2e_experiments.png", full_page=True)
    verdict = decision.get_attribute("data-verdict")
    page.locator("#ex-start").click()  # only a "promote" verdict has a winner to roll out
    outcome = page.locator("#ex-message [data-testid=op-message]")
    expect(outcome).to_have_attribute("data-outcome", "ok" if verdict == "promote" else "error")


def test_compare_two_versions_side_by_side(page: Page, server: Server) -> None:
    open_tab(page, "Compare")
    expect(page.locator("#cmp-version-a input")).to_have_value("mini-v1")
    expect(page.locator("#cmp-version-b input")).to_have_value("mini-v2")
    example = first_example()
    page.locator("#cmp-example-0").click()
    expect(page.locator("[data-testid=documents]")).to_have_attribute("data-count", str(len(example["documents"])))
    page.locator("#cmp-run").click()
    table = page.locator("[data-testid=compare]")
    expect(table).to_have_attribute("data-version-a", "mini-v1")
    expect(table).to_have_attribute("data-version-b", "mini-v2")
    rows = table.locator("tr[data-mark]")
    expect(rows).to_have_count(len(example["documents"]))
    with server.client() as client:
        body = {"query": api_item(example["query"]), "documents": [api_item(d) for d in example["documents"]],
                "versions": list(VERSIONS)}
        expected = client.post("/v1/rerank/compare", json=body).json()["changes"]
    marks = [(int(r.get_attribute("data-index")), r.get_attribute("data-mark")) for r in rows.all()]
    assert marks == [(c["index"], c["mark"]) for c in expected]
    expect(page.locator("[data-testid=compare-b]")).to_contain_text("ms")
    page.screenshot(path="/tmp/e2e_compare.png", full_page=True)
