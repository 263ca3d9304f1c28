"""The admin in headless Chromium: an admin finds the broken connection and refreshes it.

As tests/test_browser.py: Playwright drives Debian's Chromium against ``live_server``, the fake
Atlassian runs in-process. The screenshots (the list with a row in every health state, a grant
page, the result) go to the test's tmp dir; the test prints their paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from atlassian_oauth.models import GrantHealth
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from tests.admin_helpers import OWNERS, every_state
from tests.browser_helpers import browser_page, shoot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "admin-browser-password"  # a test user's
WIDTH = 1280


@pytest.fixture
def admin_url(
    live_server: Any,
    fake_atlassian: FakeAtlassian,
    sites: Any,
    django_user_model: Any,
    settings: Any,
) -> str:
    # No broker: "refresh now" runs in the request, so the result page shows what happened.
    del settings.CELERY_BROKER_URL
    every_state(fake_atlassian)
    django_user_model.objects.create_superuser("root", "root@corp.example", PASSWORD)
    url: str = live_server.url
    assert url.startswith("http://localhost:"), url
    return url


@pytest.fixture
def page(chromium_path: str, admin_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see browser_page
    with browser_page(chromium_path, admin_url, viewport={"width": WIDTH, "height": 900}) as opened:
        yield opened


def assert_nothing_cut_off(page: Page) -> None:
    """The list fits the 1,280 px window: no horizontal scrolling of the page or the table."""
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth,"
        " document.querySelector('#changelist .results').scrollWidth,"
        " document.querySelector('#changelist .results').clientWidth]"
    )
    assert widths[0] <= WIDTH, widths
    columns = page.evaluate(
        "() => [...document.querySelectorAll('#result_list thead th')].map("
        "th => th.className + ':' + th.getBoundingClientRect().width)"
    )
    assert widths[1] <= widths[2], (widths, columns)


def test_admin_finds_the_broken_connection_and_refreshes_it(page: Page, tmp_path: Path) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text("root")

    page.goto("/admin/atlassian_oauth/connection/")
    summary = page.locator(".atlassian-oauth-summary li")
    expect(summary).to_have_count(len(GrantHealth.choices))
    for state, label in GrantHealth.choices:
        expect(page.locator(f'.atlassian-oauth-summary a[data-state="{state}"]')).to_have_text(
            f"1 {label}"
        )
    expect(page.locator("#result_list tbody tr")).to_have_count(len(OWNERS))
    badges = page.locator("#result_list .atlassian-oauth-badge")
    expect(badges).to_have_count(len(OWNERS))
    # Colour, not just text: the badges of an error, a warning and a healthy row differ.
    colours = {
        state: page.locator(f".atlassian-oauth-state-{state}").evaluate(
            "el => getComputedStyle(el).backgroundColor"
        )
        for state in (GrantHealth.HEALTHY, GrantHealth.NEEDS_RECONNECT, GrantHealth.REFRESH_FAILING)
    }
    assert len(set(colours.values())) == 3, colours
    assert "rgba(0, 0, 0, 0)" not in colours.values(), colours
    expect(page.locator("#result_list")).to_contain_text("Refresh failing 2 times")
    expect(page.locator("#result_list")).to_contain_text("Ask bob to reconnect")
    shoot(page, tmp_path / "admin-connections.png", "the connections list (every state)")
    assert_nothing_cut_off(page)

    page.goto("/admin/atlassian_oauth/grant/")
    expect(page.locator("#result_list tbody tr")).to_have_count(len(OWNERS))
    assert_nothing_cut_off(page)
    shoot(page, tmp_path / "admin-grants.png", "the grants list")

    page.goto("/admin/atlassian_oauth/connection/")
    page.locator('.atlassian-oauth-summary a[data-state="needs_reconnect"]').click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bob")
    expect(page.locator(".atlassian-oauth-summary-active")).to_contain_text("Needs reconnect")

    rows.first.get_by_role("link", name="bob@atlassian.example").click()
    expect(page.locator("#content h2").first).to_be_visible()
    expect(page.locator(".field-health")).to_contain_text("Needs reconnect")
    expect(page.locator(".field-access_token_fingerprint")).to_contain_text("sha256:")
    expect(page.locator(".submit-row input[type=submit]")).to_have_count(0)  # nothing to save
    expect(page.locator(".atlassian-oauth-history")).to_contain_text("Needs reconnect")
    shoot(page, tmp_path / "admin-grant.png", "the grant page of bob's broken connection")

    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator("#content h1")).to_have_text("Refresh these grants now?")
    expect(page.locator(".atlassian-oauth-results")).to_contain_text("bob@atlassian.example")
    page.get_by_role("button", name="Yes, refresh now").click()
    expect(page.locator(".atlassian-oauth-mode")).to_contain_text("No Celery broker is configured")
    result = page.locator(".atlassian-oauth-results tbody tr")
    expect(result).to_have_count(1)
    expect(result.first).to_contain_text("bob@atlassian.example")
    expect(result.first.locator(".atlassian-oauth-result-text")).not_to_be_empty()
    shoot(page, tmp_path / "admin-refresh-result.png", "the result of refresh now")
