"""The whole connect round trip in headless Chromium: the demo site, the fake Atlassian, a user.

Playwright drives Debian's Chromium (never a browser Playwright downloads) against pytest-django's
``live_server``, which shares the test database with this process; the fake Atlassian runs
in-process (``fake_atlassian``) and shows its consent page, so the test clicks Accept or Decline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response, expect

from atlassian_oauth.models import Connection, Event, Grant, Resource
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from demo_site.demo_data import seed
from tests.browser_helpers import browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCOPES = {"read:jira-user", "read:jira-work", "write:jira-work", "read:me", "offline_access"}
CONNECTED_APPS_URL = "https://id.atlassian.com/manage-profile/apps"


@pytest.fixture
def demo_url(live_server: Any, fake_atlassian: FakeAtlassian) -> str:
    """The demo's tenant on ``localhost`` (the Site is found from the host), seeded."""
    assert fake_atlassian.auto_consent is None  # the consent page is shown, not skipped
    seed()
    url: str = live_server.url
    assert url.startswith("http://localhost:"), url
    return url


@pytest.fixture
def page(chromium_path: str, demo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see browser_page
    with browser_page(chromium_path, demo_url) as opened:
        yield opened


def expect_message(page: Page, text: str) -> None:
    """A flash message: the app's own frame and the demo's render them in different lists."""
    expect(page.get_by_role("listitem").filter(has_text=text)).to_be_visible()


def log_in_as_alice(page: Page) -> None:
    page.goto("/")
    page.locator("a.button", has_text="Log in").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-demo-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Welcome, Alice.")).to_be_visible()
    expect(page.locator("header nav")).to_contain_text("Signed in as alice")


def reach_consent_page(page: Page, fake: FakeAtlassian) -> None:
    log_in_as_alice(page)
    page.get_by_role("link", name="Connect Jira").click()
    expect(page).to_have_title("Fake Atlassian consent")
    assert page.url.startswith(f"{fake.url}/authorize?")
    expect(page.get_by_role("heading", name="Fake Atlassian consent")).to_be_visible()
    expect(page.locator("#client-id")).to_have_text("fake-client-id")
    expect(page.locator("#scopes li")).to_have_count(len(SCOPES))
    # Each scope is listed in words, its name kept in data-scope (and shown small).
    assert (
        set(page.locator("#scopes li").evaluate_all("items => items.map(i => i.dataset.scope)"))
        == SCOPES
    )


def connect_and_open_status(page: Page, fake: FakeAtlassian) -> None:
    reach_consent_page(page, fake)
    page.get_by_role("button", name="Accept").click()
    expect_message(page, "Jira is connected as ada@example.com.")
    page.get_by_role("link", name="Connection details").click()
    expect(page.locator(".atlassian-oauth-account")).to_have_text("Connected as ada@example.com.")


def test_accept_connects_shows_status_and_disconnects(
    page: Page, fake_atlassian: FakeAtlassian
) -> None:
    connect_and_open_status(page, fake_atlassian)
    assert page.url.endswith("/atlassian/")
    expect(page.locator(".atlassian-oauth-health")).to_contain_text("Healthy")
    resources = page.locator(".atlassian-oauth-resources li")
    # The default scopes are Jira's only, so acme is listed once, for Jira.
    expect(resources).to_have_count(1)
    expect(resources.nth(0)).to_contain_text("acme")
    expect(resources.nth(0)).to_contain_text("Jira")
    assert set(page.locator(".atlassian-oauth-scopes code").all_inner_texts()) == SCOPES

    grant = Grant.objects.get()
    assert grant.account_email == "ada@example.com"
    assert Connection.objects.get().grant == grant
    assert Resource.objects.filter(grant=grant).count() == 1

    page.get_by_role("button", name="Disconnect").click()
    expect_message(page, "Jira is disconnected.")
    expect_message(page, CONNECTED_APPS_URL)
    expect(
        page.get_by_text("Your Atlassian account is not connected to this site.")
    ).to_be_visible()
    expect(page.get_by_role("link", name="Connect Jira")).to_be_visible()
    assert not Connection.objects.exists()
    assert not Grant.objects.exists()
    assert not Resource.objects.exists()


def test_decline_stores_nothing_and_says_so(page: Page, fake_atlassian: FakeAtlassian) -> None:
    reach_consent_page(page, fake_atlassian)
    page.get_by_role("button", name="Decline").click()
    expect_message(page, "You declined access, so Jira is not connected.")
    assert page.url.endswith("/atlassian/")
    expect(page.get_by_role("link", name="Connect Jira")).to_be_visible()
    assert not Connection.objects.exists()
    assert not Grant.objects.exists()
    failed = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert failed.details["reason"] == "declined"
    assert failed.user is not None and failed.user.get_username() == "alice"
    assert fake_atlassian.counts.get("code_exchange", 0) == 0


def test_the_callback_response_sends_no_referrer(page: Page, fake_atlassian: FakeAtlassian) -> None:
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    connect_and_open_status(page, fake_atlassian)
    callbacks = [r for r in responses if "/atlassian/callback/" in r.url]
    assert len(callbacks) == 1, [r.url for r in responses]
    assert callbacks[0].status == 302
    assert callbacks[0].header_value("referrer-policy") == "no-referrer"


def test_screenshot_of_the_connected_status_page(
    page: Page, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    connect_and_open_status(page, fake_atlassian)
    expect(page.locator(".atlassian-oauth-health")).to_contain_text("Healthy")
    shot = tmp_path / "connected-status.png"
    page.screenshot(path=shot, full_page=True)
    print(f"\nscreenshot of the connected status page: {shot}")
    data = shot.read_bytes()
    assert len(data) > 1000
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
