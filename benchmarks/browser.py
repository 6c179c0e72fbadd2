"""Headless Chromium through Playwright, as the wardrobe page's tests and benchmark drive it.

Debian's chromium, never Playwright's own download. Every request the page makes to a
host other than the test server is recorded and blocked, and console errors are kept,
so a test can assert the page is self-contained and quiet.
"""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps",
        "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter"]  # fmt: skip
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
LOCAL = {"127.0.0.1", "localhost", "[::1]"}


class Watch:
    """What the page did that a test may object to."""

    def __init__(self) -> None:
        self.non_local: list[str] = []
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list = []

    def attach(self, context, page) -> None:
        def guard(route):
            url = route.request.url
            scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
            if scheme in ("http", "https", "ws", "wss") and (host or "") not in {h.strip("[]") for h in LOCAL}:
                self.non_local.append(url)
                return route.abort()
            return route.continue_()

        context.route("**/*", guard)
        page.on("request", lambda request: self.requests.append(request))  # Playwright cannot wrap a builtin
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))

        def dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)


@contextmanager
def chromium():
    """A launched headless browser (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(browser, viewport=DESKTOP):
    """(page, watch) in a fresh context with service workers blocked."""
    context = browser.new_context(viewport=viewport, service_workers="block")
    page = context.new_page()
    watch = Watch()
    watch.attach(context, page)
    try:
        yield page, watch
    finally:
        context.close()
