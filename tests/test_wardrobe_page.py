"""The wardrobe page in headless Chromium (Playwright), against the real server and the shipped model."""

from __future__ import annotations

import base64
import io
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from wardrobe_server import SAMPLES, wardrobe_server

from benchmarks.browser import DESKTOP, PHONE, watched_page

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium not installed (make tools)")

HOSTILE = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logs = tmp_path_factory.mktemp("page-server")
    with wardrobe_server(str(logs / "wardrobe.db"), logs / "server.log") as url:
        yield url


def _card(page, name: str):
    return page.locator(".card", has=page.locator(".name", has_text=name))


def _shelf(page, shelf: str):
    return page.locator(f'section.shelf[data-shelf="{shelf}"]')


def _open(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)


def test_a_person_adds_moves_keeps_and_removes_garments(server, browser, tmp_path):
    from playwright.sync_api import expect

    with watched_page(browser) as (page, watch):
        _open(page, server)
        page.set_input_files("#pick-files", [SAMPLES / n for n in ("sneaker.png", "trouser.png", "ankle-boot.png")])
        expect(page.locator("#arrivals [data-state=shelved]")).to_have_count(3, timeout=30_000)
        for name, shelf in [("sneaker.png", "Sneaker"), ("trouser.png", "Trouser"), ("ankle-boot.png", "Ankle boot")]:
            expect(_shelf(page, shelf).locator(".card", has_text=name)).to_have_count(1)
        expect(page.locator("#summary")).to_have_text("3 garments · 0 corrected · 0 not sure")

        # Move one with the select (touch screens), another by dragging it onto a shelf.
        move = _card(page, "trouser.png").locator("select.move")
        move.focus()  # as a click, a tap or the Tab key would: the options are filled in on first use
        move.select_option("Dress")
        expect(_shelf(page, "Dress").locator(".card.corrected", has_text="trouser.png")).to_have_count(1)
        _card(page, "sneaker.png").drag_to(_shelf(page, "Sandal"))
        expect(_shelf(page, "Sandal").locator(".card.corrected", has_text="sneaker.png")).to_have_count(1)
        expect(_shelf(page, "Dress").locator(".count")).to_have_text("(1)")

        # The "corrected" filter shows only what the person moved.
        page.check("#only-corrected")
        expect(_card(page, "ankle-boot.png")).to_be_hidden()
        expect(_card(page, "trouser.png")).to_be_visible()
        page.uncheck("#only-corrected")

        # Everything is still there after a reload: it came from the database.
        page.reload()
        expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)
        expect(_shelf(page, "Dress").locator(".card", has_text="trouser.png")).to_have_count(1)
        expect(_shelf(page, "Sandal").locator(".card", has_text="sneaker.png")).to_have_count(1)
        expect(page.locator("#summary")).to_have_text("3 garments · 2 corrected · 0 not sure")

        _card(page, "ankle-boot.png").get_by_role("button", name="Remove ankle-boot.png").click()
        expect(_card(page, "ankle-boot.png")).to_have_count(0)
        expect(page.locator("#status")).to_have_text("Removed ankle-boot.png.")
        expect(page.locator(".card .thumb.loaded")).to_have_count(2)
        page.screenshot(path=tmp_path / "desktop.png", full_page=True)
        page.set_viewport_size(PHONE)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
        page.screenshot(path=tmp_path / "phone.png", full_page=True)

        listed = httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]
        assert sorted((i["filename"], i["shelf"]) for i in listed) == [
            ("sneaker.png", "Sandal"),
            ("trouser.png", "Dress"),
        ]
        assert watch.non_local == [] and watch.console_errors == [] and watch.dialogs == []
    assert (tmp_path / "desktop.png").stat().st_size > 10_000 and (tmp_path / "phone.png").stat().st_size > 10_000
    for item in listed:
        httpx.delete(f"{server}/wardrobe/items/{item['id']}", timeout=30)


def test_a_hostile_file_name_is_shown_as_text(server, browser, tmp_path):
    from playwright.sync_api import expect

    hostile = tmp_path / HOSTILE
    shutil.copy(SAMPLES / "sneaker.png", hostile)
    with watched_page(browser) as (page, watch):
        _open(page, server)
        page.set_input_files("#pick-files", [hostile])
        expect(page.locator("#arrivals [data-state=shelved]")).to_have_count(1, timeout=30_000)
        expect(_shelf(page, "Sneaker").locator(".card .name")).to_have_text(HOSTILE)
        page.reload()
        expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)
        expect(_shelf(page, "Sneaker").locator(".card .name")).to_have_text(HOSTILE)
        assert page.locator('img[src="x"]').count() == 0
        assert watch.dialogs == [] and watch.console_errors == [] and watch.non_local == []
        [item] = httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]
        assert item["filename"] == HOSTILE
        httpx.delete(f"{server}/wardrobe/items/{item['id']}", timeout=30)


def test_one_bad_file_does_not_spoil_its_batch(server, browser, tmp_path):
    from playwright.sync_api import expect

    broken = tmp_path / "broken.png"
    broken.write_bytes((SAMPLES / "trouser.png").read_bytes()[:-120])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with watched_page(browser) as (page, watch):
        _open(page, server)
        page.set_input_files("#pick-files", [SAMPLES / "sneaker.png", broken, SAMPLES / "trouser.png", notes])
        expect(page.locator("#arrivals [data-state=shelved]")).to_have_count(2, timeout=30_000)
        failed = page.locator("#arrivals li[data-state=error]")
        expect(failed).to_have_count(1, timeout=30_000)
        expect(failed.locator(".detail")).to_contain_text("file 'broken.png': truncated or corrupt")
        expect(page.locator("#arrivals li[data-state=skipped]")).to_contain_text("notes.txt")
        expect(page.locator("#progress-text")).to_have_text("2 of 4 on a shelf · 2 not added")
        # The refused batch answered 400 (expected); nothing else may complain.
        assert [e for e in watch.console_errors if "400" not in e] == [] and watch.non_local == []
    for item in httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]:
        httpx.delete(f"{server}/wardrobe/items/{item['id']}", timeout=30)


def test_the_page_works_by_keyboard_and_every_photo_has_a_text_alternative(server, browser):
    from playwright.sync_api import expect

    with watched_page(browser) as (page, _):
        _open(page, server)
        page.set_input_files("#pick-files", [SAMPLES / "trouser.png"])
        expect(_shelf(page, "Trouser").locator(".card")).to_have_count(1, timeout=30_000)
        select = _card(page, "trouser.png").locator("select.move")
        select.focus()
        page.keyboard.press("ArrowDown")  # the first shelf, T-shirt/top, chosen without a mouse…
        page.keyboard.press("Enter")  # …and the garment moved there (tests/test_wardrobe_page_a11y.py walks further)
        expect(_shelf(page, "T-shirt/top").locator(".card", has_text="trouser.png")).to_have_count(1)
        assert page.evaluate("document.activeElement.classList.contains('move')")  # focus stayed with it
        alts = page.locator("img").evaluate_all("images => images.map(i => [i.className, i.getAttribute('alt')])")
        assert [alt for cls, alt in alts if "thumb" in cls.split()] == ["trouser.png (T-shirt/top)"]
        assert all(alt is not None for _, alt in alts)  # the header's icon is decorative: alt=""
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # the remove button, next in tab order
        expect(_card(page, "trouser.png")).to_have_count(0)


def _twelve_megapixel_trouser() -> bytes:
    """A 4032×3024 phone-style JPEG: the sample trouser, dark on a light, slightly noisy floor."""
    crop = np.asarray(Image.open(SAMPLES / "trouser.png").convert("L"), dtype=np.float32) / 255
    garment = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((2400, 2400), Image.BICUBIC),
                         dtype=np.float32) / 255  # fmt: skip
    rng = np.random.default_rng(0)
    canvas = np.full((3024, 4032, 3), (236, 231, 224), dtype=np.float32)
    canvas += rng.normal(0, 6, canvas.shape[:2])[..., None]
    region = canvas[300:2700, 800:3200]
    region[:] = region * (1 - garment[..., None]) + garment[..., None] * np.array([40, 52, 90])
    buffer = io.BytesIO()
    Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_a_12_megapixel_photo_is_downsized_in_the_browser_and_shelved(server, browser, tmp_path):
    from playwright.sync_api import expect

    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(_twelve_megapixel_trouser())
    assert photo.stat().st_size > 2_000_000
    with watched_page(browser) as (page, watch):
        _open(page, server)
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/wardrobe/items")) as posted:
            page.set_input_files("#pick-files", [photo])
        expect(_shelf(page, "Trouser").locator(".card", has_text="IMG_0001.jpg")).to_have_count(1, timeout=60_000)
        body = posted.value.post_data_buffer
        assert len(body) < 1_000_000, len(body)
        assert watch.non_local == [] and watch.console_errors == []
    [item] = httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]
    thumbnail = Image.open(io.BytesIO(httpx.get(f"{server}{item['thumbnail']}", timeout=30).content))
    assert thumbnail.size == (256, 192)
    httpx.delete(f"{server}/wardrobe/items/{item['id']}", timeout=30)


def test_the_api_explorer_loads_without_any_outside_request(server, browser):
    from playwright.sync_api import expect

    with watched_page(browser, DESKTOP) as (page, watch):
        page.goto(f"{server}/docs")
        expect(page.locator(".opblock-summary-path", has_text="/classify")).to_have_count(1, timeout=30_000)
        expect(page.locator(".information-container .info")).to_be_visible()
        assert page.locator("img[src^='http']").count() == 0  # BentoML's badge images are taken out
        assert watch.non_local == [] and watch.console_errors == []


def test_a_locked_wardrobe_asks_for_its_token_once_per_tab(browser, tmp_path):
    from playwright.sync_api import expect

    with wardrobe_server(str(tmp_path / "w.db"), tmp_path / "server.log", token="open sesame") as url, \
            watched_page(browser) as (page, watch):  # fmt: skip
        page.goto(url)
        expect(page.locator("#token-form")).to_be_visible(timeout=30_000)
        page.fill("#token", "guess")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#token-error")).to_have_text("That token was not accepted.", timeout=30_000)
        page.fill("#token", "open sesame")
        page.click("#token-form button[type=submit]")
        expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)
        expect(page.locator("#token-form")).to_be_hidden()
        page.set_input_files("#pick-files", [SAMPLES / "sneaker.png"])
        expect(_shelf(page, "Sneaker").locator(".card .thumb.loaded")).to_have_count(1, timeout=30_000)
        page.reload()  # the tab remembers the token: no second question
        expect(page.locator("html[data-ready=true]")).to_have_count(1, timeout=30_000)
        expect(page.locator("#token-form")).to_be_hidden()
        expect(_shelf(page, "Sneaker").locator(".card")).to_have_count(1)
        # The only complaints are the two refused attempts before the right token (two requests each:
        # the shelves and the first page of items are asked for together).
        assert all("401" in e for e in watch.console_errors) and len(watch.console_errors) <= 4
        assert watch.non_local == []


PASTE = """([name, data]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name, { type: "image/png" }));
  document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
}"""


def test_a_pasted_image_is_added(server, browser):
    from playwright.sync_api import expect

    with watched_page(browser) as (page, watch):
        _open(page, server)
        page.evaluate(PASTE, ["image.png", base64.b64encode((SAMPLES / "ankle-boot.png").read_bytes()).decode()])
        expect(_shelf(page, "Ankle boot").locator(".card", has_text="image.png")).to_have_count(1, timeout=30_000)
        expect(page.locator("#arrivals [data-state=shelved]")).to_have_count(1)
        assert watch.console_errors == [] and watch.non_local == []
    for item in httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]:
        httpx.delete(f"{server}/wardrobe/items/{item['id']}", timeout=30)


def test_a_dropped_folder_is_walked_to_every_photo_in_it(server, browser, tmp_path):
    from playwright.sync_api import expect

    folder = tmp_path / "holiday"
    (folder / "shoes").mkdir(parents=True)
    shutil.copy(SAMPLES / "trouser.png", folder / "trouser.png")
    shutil.copy(SAMPLES / "sneaker.png", folder / "shoes" / "sneaker.png")
    (folder / "shoes" / "notes.txt").write_text("not a photo")
    with watched_page(browser) as (page, watch):
        _open(page, server)
        # A drop from the desktop, as Chromium's own input layer delivers one (DevTools protocol).
        devtools = page.context.new_cdp_session(page)
        data = {"items": [], "files": [str(folder)], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            devtools.send("Input.dispatchDragEvent", {"type": kind, "x": 300, "y": 300, "data": data})
        expect(page.locator("#arrivals [data-state=shelved]")).to_have_count(2, timeout=30_000)
        expect(_shelf(page, "Trouser").locator(".card", has_text="trouser.png")).to_have_count(1)
        expect(_shelf(page, "Sneaker").locator(".card", has_text="sneaker.png")).to_have_count(1)
        expect(page.locator("#arrivals li[data-state=skipped]")).to_contain_text("notes.txt")
        assert watch.console_errors == [] and watch.non_local == []
    for item in httpx.get(f"{server}/wardrobe/items", timeout=30).json()["items"]:
        httpx.delete(f"{server}/wardrobe/items/{item['id']}", timeout=30)


@contextmanager
def _worker_filled(url: str, cap: int):
    """Uploads that send their headers and then nothing (each holds a request slot), opened one by one
    until the worker answers 503: a request of the page's still in progress when they start cannot
    leave one slot free."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    head = (f"POST /classify HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n").encode()  # fmt: skip
    sockets = []
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/wardrobe/shelves", timeout=30).status_code != 503:  # every slot taken
            assert len(sockets) < 2 * cap and time.monotonic() < deadline, "stalled uploads never filled the worker"
            sockets.append(socket.create_connection((host, port)))
            sockets[-1].sendall(head)
            time.sleep(0.05)  # the worker reads the headers and takes the slot
        yield
    finally:
        for connection in sockets:
            connection.close()


def test_a_busy_server_is_tried_again_and_the_photo_lands(browser, tmp_path):
    from playwright.sync_api import expect

    # Requests in progress per worker: room for the page's own parallel module and API requests.
    cap = 16
    busy = {"WARDROBE_MAX_CONNECTIONS": str(cap), "WARDROBE_BODY_IDLE_S": "25"}
    with wardrobe_server(str(tmp_path / "w.db"), tmp_path / "server.log", **busy) as url, \
            watched_page(browser) as (page, watch):  # fmt: skip
        _open(page, url)
        with _worker_filled(url, cap):
            page.set_input_files("#pick-files", [SAMPLES / "sneaker.png"])
            row = page.locator("#arrivals li", has_text="sneaker.png")
            expect(row.locator(".detail")).to_have_text("server busy, trying again", timeout=30_000)
        # The stalled uploads have gone: the next try (after Retry-After) lands.
        expect(row).to_have_attribute("data-state", "shelved", timeout=30_000)
        expect(_shelf(page, "Sneaker").locator(".card", has_text="sneaker.png")).to_have_count(1)
        posts = [r for r in watch.requests if r.method == "POST" and r.url.endswith("/wardrobe/items")]
        assert len(posts) >= 2 and all("503" in e for e in watch.console_errors) and watch.non_local == []
