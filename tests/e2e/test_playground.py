"""Playground in the browser: examples, uploads of mixed media, and bad input."""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.e2e_helpers import EXAMPLES, Server, api_item, first_example, top_index

IMAGES, VIDEOS = EXAMPLES / "images", EXAMPLES / "videos"


def _rest_top(server: Server, body: dict) -> tuple[int, str]:
    with server.client() as client:
        response = client.post("/v1/rerank", json=body)
    response.raise_for_status()
    return response.json()["results"][0]["index"], response.json()["model"]


def test_example_loads_with_one_click_and_ranks_like_the_api(page: Page, server: Server) -> None:
    example = first_example()
    page.locator("#pg-example-0").click()
    expect(page.locator("[data-testid=documents]")).to_have_attribute("data-count", str(len(example["documents"])))
    page.locator("#pg-rank").click()
    results = page.locator("[data-testid=results]")
    expect(results).to_have_attribute("data-version", "mini-v1")
    expect(results.locator("li")).to_have_count(len(example["documents"]))
    expected, model = _rest_top(server, {"query": api_item(example["query"]),
                                         "documents": [api_item(d) for d in example["documents"]]})
    assert (top_index(page), "mini-v1") == (expected, model)
    page.screenshot(path="/tmp/e2e_playground_example.png", full_page=True)


def test_mixed_uploads_rank_the_cat_video_first(page: Page, server: Server) -> None:
    page.locator("#pg-query-text textarea").fill("a cat")
    page.locator("#pg-query-image input[type=file]").set_input_files(str(IMAGES / "query_cat_face.jpg"))
    page.locator("#pg-doc-lines textarea").fill("Stock markets fell sharply on Monday.\nA recipe for tomato soup.")
    files = [IMAGES / "coffee.jpg", IMAGES / "rocket.jpg", VIDEOS / "cat_pan.mp4", VIDEOS / "clock_pan.mp4"]
    page.locator("#pg-doc-files input[type=file]").set_input_files([str(f) for f in files])
    expect(page.locator("#pg-doc-files")).to_contain_text("clock_pan")
    page.locator("#pg-add-many").click()
    documents = page.locator("[data-testid=documents]")
    expect(documents).to_have_attribute("data-count", "6")
    expect(documents.locator("li[data-kind=video] img")).to_have_count(2)  # video frames as thumbnails
    page.locator("#pg-add-one-box").get_by_text("Add one").click()
    page.locator("#pg-doc-text textarea").fill("Espresso, freshly brewed")
    page.locator("#pg-doc-video input[type=file]").set_input_files(str(VIDEOS / "coffee_zoom.mp4"))
    expect(page.locator("#pg-doc-video video")).to_be_attached()
    page.locator("#pg-add-one").click()
    expect(documents).to_have_attribute("data-count", "7")
    expect(documents.locator("li[data-index='6']")).to_have_attribute("data-kind", "mixed")
    page.locator("#pg-rank").click()
    expect(page.locator("[data-testid=results] li")).to_have_count(7)
    assert top_index(page) == 4  # the cat video
    expect(page.locator("[data-testid=latency]")).to_be_visible()


def test_bad_input_shows_a_clear_message(page: Page, tmp_path: Path) -> None:
    page.locator("#pg-rank").click()
    expect(page.locator("[data-testid=error]")).to_contain_text("query is empty")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    page.locator("#pg-query-text textarea").fill("a cat")
    page.locator("#pg-doc-files input[type=file]").set_input_files(str(broken))
    expect(page.locator("#pg-doc-files")).to_contain_text("broken")
    page.locator("#pg-add-many").click()
    expect(page.locator("[data-testid=documents]")).to_have_attribute("data-count", "1")
    page.locator("#pg-rank").click()
    expect(page.locator("[data-testid=error]")).to_contain_text("documents[0]")
    expect(page.locator("[data-testid=results]")).to_have_count(0)


def test_results_go_stale_when_inputs_change_and_the_instruction_note_shows(page: Page) -> None:
    page.locator("#pg-example-0").click()
    # the example also sets the instruction field: wait until it has landed, or it may overwrite ours
    expect(page.locator("[data-testid=documents]")).to_have_attribute("data-count", str(len(first_example()["documents"])))
    page.get_by_text("Options", exact=True).click()
    page.locator("#pg-instruction textarea").fill("Prefer photos")
    page.locator("#pg-rank").click()
    view = page.locator("#pg-results .rr-results")
    expect(view).to_have_attribute("data-stale", "false")
    expect(page.locator("[data-testid=instruction-ignored]")).to_contain_text("ignores the instruction")
    page.locator("#pg-query-text textarea").fill("a rocket launch")
    expect(view).to_have_attribute("data-stale", "true")
    expect(page.locator("[data-testid=stale-note]")).to_be_visible()


def test_a_non_image_as_query_image_is_cleared_and_later_ranks_work(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("these are meeting notes, not an image")
    page.locator("#pg-query-text textarea").fill("a cat")
    page.locator("#pg-doc-lines textarea").fill("a sleeping cat\nstock markets")
    page.locator("#pg-add-many").click()
    page.locator("#pg-query-image input[type=file]").set_input_files(str(notes))
    expect(page.get_by_text("is not an image this page can read")).to_be_visible()
    page.locator("#pg-rank").click()
    expect(page.locator("[data-testid=results] li")).to_have_count(2)
    expect(page.locator("[data-testid=error]")).to_have_count(0)


def test_more_than_the_document_limit_is_refused_when_added(page: Page) -> None:
    page.locator("#pg-doc-lines textarea").fill("\n".join(f"document {i}" for i in range(101)))
    page.locator("#pg-add-many").click()
    expect(page.get_by_text("the limit is 100")).to_be_visible()
    expect(page.locator("[data-testid=documents]")).to_have_count(0)
