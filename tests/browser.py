"""The browser helpers for tests: one implementation, in benchmarks/browser.py (the page benchmark uses it too)."""

from benchmarks.browser import CHROMIUM, DESKTOP, PHONE, Watch, chromium, watched_page

__all__ = ["CHROMIUM", "DESKTOP", "PHONE", "Watch", "chromium", "watched_page"]
