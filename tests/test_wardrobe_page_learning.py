"""The wardrobe page's "Teach the model" panel and the model's-eye view, in headless Chromium.

The real server and the shipped model (tests/wardrobe_server.py); Playwright drives Debian's
chromium (benchmarks/browser.py). One server for the module; each test adds its own items.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from wardrobe_server import ROOT, SAMPLES, wardrobe_server

from benchmarks.browser import watched_page
from contract.store.export import read_export

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium not installed (make tools)")

ADMIN_TOKEN = "page-tests-admin-token"
SAMPLE_SHELVES = {"sneaker.png": "Sneaker", "trouser.png": "Trouser", "ankle-boot.png": "Ankle boot"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logs = tmp_path_factory.mktemp("page-learning-server")
    with wardrobe_server(str(logs / "wardrobe.db"), logs / "server.log", WARDROBE_ADMIN_TOKEN=ADMIN_TOKEN) as url:
        yield url


@pytest.fixture
def items(server):
    """The three samples, freshly added (and the wardrobe otherwise empty): {filename: item}."""
    with httpx.Client(base_url=server, timeout=60) as http:
        for old in http.get("/wardrobe/items", params={"limit": 1000}).json()["items"]:
            http.delete(f"/wardrobe/items/{old['id']}")
        files = [("images", (name, (SAMPLES / name).read_bytes(), "image/png")) for name in SAMPLE_SHELVES]
        added = http.post("/wardrobe/items", files=files).json()
    assert [(i["shelf"], i["unsure"]) for i in added] == [(s, False) for s in SAMPLE_SHELVES.values()]
    return {i["filename"]: i for i in added}


def _shelf(page, shelf: str):
    return page.locator(f'section.shelf[data-shelf="{shelf}"]')


def _audit_row(page, name: str):
    return page.locator("#audit li", has=page.locator(f'img[alt="{name}"]'))


def _open(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)


def test_the_audit_confirms_and_fixes_and_keeps_a_row_whose_move_failed(server, browser, items):
    from playwright.sync_api import expect

    held = []  # the item listing, held back so the audit is answered before any card exists
    with watched_page(browser) as (page, watch):
        page.route(lambda url: "/wardrobe/items?" in url, lambda route: held.append(route))
        page.goto(server)
        expect(page.locator("#audit li")).to_have_count(3, timeout=30_000)
        expect(page.locator("#learning-waiting")).to_contain_text("0 corrections waiting to teach the model")
        # Which model serves, and the Fashion-MNIST test accuracy it records (the shipped CNN: no warning).
        serving = re.compile(r"serving model [0-9a-f]{12}, Fashion-MNIST test accuracy \d+\.\d%\)\.$")
        expect(page.locator("#learning-waiting")).to_contain_text(serving)
        assert held and page.locator(".card").count() == 0

        # Confirming an item whose card has not loaded yet (this threw a TypeError).
        _audit_row(page, "sneaker.png").get_by_role("button", name="sneaker.png is a Sneaker: right").click()
        expect(_audit_row(page, "sneaker.png")).to_have_count(0)
        expect(page.locator("#status")).to_have_text("Moved sneaker.png to Sneaker.")

        # A move the server refuses (the item was deleted elsewhere) keeps its row, usable again.
        httpx.delete(f"{server}/wardrobe/items/{items['trouser.png']['id']}", timeout=30)
        _audit_row(page, "trouser.png").get_by_role("button", name="trouser.png is a Trouser: right").click()
        expect(page.locator("#status")).to_contain_text("Could not move trouser.png: no wardrobe item with id")
        expect(_audit_row(page, "trouser.png").get_by_role("button")).to_be_enabled()

        # Fixing one with its select: it goes to the shelf the person chose.
        fix = _audit_row(page, "ankle-boot.png").locator("select")
        fix.focus()  # the options are filled in on first use
        fix.select_option("Sneaker")
        expect(_audit_row(page, "ankle-boot.png")).to_have_count(0)

        for route in held:
            route.continue_()
        expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)
        sneakers = _shelf(page, "Sneaker").locator(".card.corrected")
        expect(sneakers).to_have_count(2)  # the listing (older news) did not undo the two answers
        expect(page.locator(".card", has_text="trouser.png")).to_have_count(0)
        expect(page.locator("#summary")).to_have_text("2 garments · 2 corrected · 0 not sure")

        page.reload()
        expect(page.locator("#learning-waiting")).to_contain_text("2 corrections waiting", timeout=30_000)
        expect(page.locator("#audit-box")).to_be_hidden()  # nothing confident and unchecked is left
        # The refused PATCH answered 404 (expected); nothing else may complain.
        assert [e for e in watch.console_errors if "404" not in e] == [] and watch.non_local == []
    stored = {i["filename"]: i for i in httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]}
    assert {n: (i["shelf"], i["label_source"]) for n, i in stored.items()} == {
        "sneaker.png": ("Sneaker", "person"), "ankle-boot.png": ("Sneaker", "person")}  # fmt: skip


def test_the_export_button_saves_the_wardrobe_as_the_server_names_it(server, browser, items, tmp_path):
    with watched_page(browser) as (page, watch):
        _open(page, server)
        with page.expect_download(timeout=30_000) as download:
            page.click("#export")
        assert download.value.suggested_filename.startswith("wardrobe-export-")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert watch.console_errors == [] and watch.non_local == []
    export = read_export(saved)
    assert sorted((i.id, i.label) for i in export.items) == sorted(
        (i["id"], i["label"]) for i in items.values())  # fmt: skip


def test_a_card_shows_what_the_model_saw_beside_its_thumbnail(server, browser, items):
    from playwright.sync_api import expect

    with watched_page(browser) as (page, watch):
        _open(page, server)
        card = page.locator(".card", has_text="trouser.png")
        toggle = card.get_by_role("button", name="28×28 input the model saw: trouser.png")
        expect(card.locator(".input")).to_be_hidden()
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        view = card.locator("img.input")
        expect(view).to_be_visible()
        expect(view).to_have_attribute("alt", "trouser.png as the model saw it: 28×28 pixels")
        assert view.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [28, 28]
        # The pixels are the model input: a 28×28 crop reaches the model untouched.
        drawn = view.evaluate("""img => {
            const canvas = document.createElement("canvas");
            canvas.width = canvas.height = 28;
            const context = canvas.getContext("2d");
            context.drawImage(img, 0, 0);
            return Array.from(context.getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0));
        }""")
        sample = np.asarray(Image.open(SAMPLES / "trouser.png").convert("L"))
        assert np.array_equal(np.array(drawn, dtype=np.uint8).reshape(28, 28), sample)
        thumb, seen = card.locator(".thumb").bounding_box(), view.bounding_box()
        assert seen["x"] > thumb["x"] and abs(seen["y"] - thumb["y"]) < 2  # beside it, not below
        toggle.click()
        expect(view).to_be_hidden()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        assert watch.console_errors == [] and watch.non_local == []
    png = httpx.get(f"{server}/wardrobe/items/{items['trouser.png']['id']}/input.png", timeout=30)
    assert Image.open(io.BytesIO(png.content)).size == (28, 28)


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f}%"


def test_the_panel_shows_the_models_the_wardrobe_has_had_and_their_held_out_figures(server, browser, items):
    from playwright.sync_api import expect

    admin = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120)
    for item in items.values():  # the person confirms all three: the canary's held-out items
        assert httpx.patch(f"{server}/wardrobe/items/{item['id']}", json={"label": item["label"]}).status_code == 200
    published = admin.post("/admin/models", content=(ROOT / "models" / "cnn-int8.onnx").read_bytes())
    assert published.status_code in (200, 201), published.text
    sha = published.json()["model"]["sha256"]
    try:
        # Three held-out items are too few for the canary to judge: refused, then forced with a reason.
        refused = admin.post(f"/admin/models/{sha}/promote")
        assert refused.status_code == 409 and "fewer than the 10 it needs to judge" in refused.json()["error"]
        promoted = admin.post(f"/admin/models/{sha}/promote", json={"force": True, "reason": "the INT8 twin"})
        assert promoted.status_code == 200, promoted.text
        history = httpx.get(f"{server}/wardrobe/models", timeout=30).json()
        new, old = history["models"][:2]
        assert (new["sha256"], new["state"], old["state"]) == (sha, "champion", "previous")
        canary = new["canary"]
        assert canary["items"] == 3
        with watched_page(browser) as (page, watch):
            _open(page, server)
            rows = page.locator("#history tbody tr")
            expect(rows).to_have_count(len(history["models"]))
            expect(rows.nth(0).locator("th code")).to_have_text(sha[:12])
            expect(rows.nth(0).locator("td")).to_have_text([
                "serving", "uploaded", new["promoted_at"][:16].replace("T", " ") + " UTC",
                f"{_percent(canary['candidate_accuracy'])} (the champion then: "
                f"{_percent(canary['champion_accuracy'])}) on 3 items",
                _percent(new["test_accuracy"]), "Download",
            ])  # fmt: skip
            expect(rows.nth(0)).to_have_class("serving")
            expect(rows.nth(1).locator("td").nth(0)).to_have_text("served before")
            expect(rows.nth(1).locator("td").nth(1)).to_have_text("shipped")
            assert watch.console_errors == [] and watch.non_local == []
    finally:
        admin.post("/admin/models/rollback")  # the shipped model again, for whatever runs next
        admin.close()
