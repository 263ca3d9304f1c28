"""One way to open a page in Debian's headless Chromium with Playwright, for the browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connections
from playwright.sync_api import Page, sync_playwright

#: As the machine's docs advise: no sandbox as root, and no background traffic to hosts a
#: closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser_page(chromium_path: str, base_url: str, **context_options: Any) -> Iterator[Page]:
    """A page of a fresh browser context on ``base_url``; closes everything after the block.

    Set DJANGO_ALLOW_ASYNC_UNSAFE first (``monkeypatch.setenv``): Playwright's sync API keeps
    an asyncio loop marked as running on this thread, so Django would refuse the test's own
    (synchronous) queries.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(base_url=base_url, **context_options)
            context.set_default_timeout(10_000)
            yield context.new_page()
            context.close()
        finally:
            browser.close()
            # The test's queries ran while Playwright's loop was marked running, so Django gave
            # them a connection of their own (per context); close it, or PostgreSQL refuses to
            # drop the test database at the end of the session.
            connections.close_all()


def shoot(page: Page, path: Path, what: str) -> None:
    """A full-page screenshot at ``path``, its path printed (to look at it), checked as a PNG.

    With ``SCREENSHOTS_DIR`` set, a copy goes there too, under the same name: `make screenshots`
    takes the README's pictures from it, so they always show what the tests saw.
    """
    page.screenshot(path=path, full_page=True)
    print(f"\nscreenshot of {what}: {path}")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    if export_dir := os.environ.get("SCREENSHOTS_DIR"):
        Path(export_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(export_dir) / path.name)
