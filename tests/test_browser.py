"""The user's pages in headless Chromium: the demo site, the fake Atlassian, a user.

Playwright drives Debian's Chromium (never a browser Playwright downloads) against pytest-django's
``live_server``, which shares the test database with this process; the fake Atlassian runs
in-process (``fake_atlassian``) and shows its consent page, so the test clicks Accept or Decline
(or consents at once, where the consent page is not what the test is about).

Screenshots go to each test's ``tmp_path`` (printed with ``-s``): the button in each state, the
connect and disconnect pages, messages at each level, the status page healthy and dead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, Response, expect

from atlassian_oauth.models import Connection, Event, Grant, Resource
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from demo_site.demo_data import seed
from tests.browser_helpers import browser_page, shoot
from tests.page_helpers import app_frame  # noqa: F401  # a fixture

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
    expect(page.locator("li").filter(has_text=text)).to_be_visible()


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
    page.get_by_role("button", name="Connect Jira").click()
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

    page.get_by_role("link", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Disconnect Jira?")).to_be_visible()
    assert Connection.objects.exists()  # asking changed nothing
    page.get_by_role("button", name="Disconnect Jira").click()
    expect_message(page, "Jira is disconnected.")
    expect(
        page.get_by_role("listitem").get_by_role("link", name="connected apps")
    ).to_have_attribute("href", CONNECTED_APPS_URL)
    expect(
        page.get_by_text("Your Atlassian account is not connected to this site.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Connect Jira")).to_be_visible()
    assert not Connection.objects.exists()
    assert not Grant.objects.exists()
    assert not Resource.objects.exists()


def test_decline_stores_nothing_and_says_so(page: Page, fake_atlassian: FakeAtlassian) -> None:
    reach_consent_page(page, fake_atlassian)
    page.get_by_role("button", name="Decline").click()
    expect_message(page, "You declined access, so Jira is not connected.")
    assert page.url.endswith("/atlassian/")
    expect(page.get_by_role("button", name="Connect Jira")).to_be_visible()
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


# ---- each state the user can meet, with screenshots ---------------------------------------------

#: The colours of the thing to click (atlassian_oauth.css): solid blue with white text.
BLUE, WHITE = "rgb(0, 82, 204)", "rgb(255, 255, 255)"
BAD_STATE = "This connection attempt expired or was started in another browser. Connect again."


def log_in(page: Page, base_url: str, username: str = "alice") -> None:
    """Log in by handing the browser a session made by Django's test client (the login form
    is the demo's business, tested above)."""
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}]
    )


def expect_clickable(
    page: Page, name: str, *, colours: tuple[str, str] | None = (BLUE, WHITE)
) -> None:
    """A button that looks like the thing to click: enabled, opaque, a saturated colour (never
    a grey that reads as disabled); in the app's own stylesheet, solid blue with white words.
    ``colours=None`` where a site's stylesheet (the demo's) chooses them."""
    button = page.get_by_role("button", name=name, exact=True)
    expect(button).to_be_visible()
    expect(button).to_be_enabled()
    expect(button).to_have_css("cursor", "pointer")
    expect(button).to_have_css("opacity", "1")
    background = button.evaluate("element => getComputedStyle(element).backgroundColor")
    red, green, blue = (int(part) for part in background[4:-1].split(",")[:3])
    assert max(red, green, blue) - min(red, green, blue) > 80, f"{name}: grey {background}"
    if colours:
        expect(button).to_have_css("background-color", colours[0])
        expect(button).to_have_css("color", colours[1])


def test_the_button_in_each_state(
    page: Page, demo_url: str, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    fake_atlassian.auto_consent = "accept"
    log_in(page, demo_url)
    page.goto("/")
    expect_clickable(page, "Connect Jira", colours=None)
    shoot(page, tmp_path / "button-connect.png", "the home page's Connect Jira button")

    page.get_by_role("button", name="Connect Jira").click()
    expect_message(page, "Jira is connected as ada@example.com.")
    connected = page.get_by_role("link", name="Jira connected")
    expect(connected).to_have_attribute("href", "/atlassian/")
    expect(page.get_by_role("button", name="Connect Jira")).to_have_count(0)
    shoot(page, tmp_path / "button-connected.png", "the home page once Jira is connected")

    Grant.objects.update(status=Grant.Status.NEEDS_RECONNECT, state_changed_at=timezone.now())
    page.goto("/")
    expect_clickable(page, "Reconnect Jira", colours=None)
    expect(page.get_by_role("link", name="Jira connected")).to_have_count(0)
    shoot(page, tmp_path / "button-reconnect.png", "the home page when Jira needs a reconnect")

    page.get_by_role("button", name="Reconnect Jira").click()
    expect_message(page, "Jira is connected as ada@example.com.")
    expect(page.get_by_role("link", name="Jira connected")).to_be_visible()
    assert Grant.objects.get().status == Grant.Status.ACTIVE


@pytest.mark.usefixtures("app_frame")
def test_the_connect_page_a_link_leads_to(
    page: Page, demo_url: str, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    fake_atlassian.auto_consent = "accept"
    log_in(page, demo_url)
    page.goto("/atlassian/connect/?next=/atlassian/")
    expect(page.get_by_role("heading", name="Connect Jira")).to_be_visible()
    expect_clickable(page, "Connect Jira")
    assert fake_atlassian.counts.get("authorize", 0) == 0  # a GET starts nothing
    shoot(page, tmp_path / "connect-page.png", "GET /atlassian/connect/")
    page.get_by_role("button", name="Connect Jira").click()
    expect_message(page, "Jira is connected as ada@example.com.")
    assert page.url == f"{demo_url}/atlassian/"


@pytest.mark.usefixtures("app_frame")
def test_disconnect_asks_first_and_points_to_atlassian(
    page: Page, demo_url: str, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    fake_atlassian.auto_consent = "accept"
    log_in(page, demo_url)
    page.goto("/atlassian/")
    page.get_by_role("button", name="Connect Jira").click()
    expect(page.locator(".atlassian-oauth-health")).to_contain_text("Healthy")
    shoot(page, tmp_path / "status-healthy.png", "the status page (app frame), healthy")

    page.get_by_role("link", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Disconnect Jira?")).to_be_visible()
    expect(
        page.get_by_text("This site stops using Jira for you as ada@example.com")
    ).to_be_visible()
    confirm = page.get_by_role("button", name="Disconnect Jira")
    expect(confirm).to_have_css("background-color", "rgb(202, 53, 33)")  # red: it deletes
    shoot(page, tmp_path / "disconnect-confirm.png", "the disconnect confirmation")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", name="Jira connection")).to_be_visible()
    assert Connection.objects.count() == 1

    page.get_by_role("link", name="Disconnect").click()
    page.get_by_role("button", name="Disconnect Jira").click()
    done = page.locator(".atlassian-oauth-message-success")
    expect(done).to_contain_text("Done: Jira is disconnected.")
    expect(done.get_by_role("link", name="connected apps")).to_have_attribute(
        "href", CONNECTED_APPS_URL
    )
    expect_clickable(page, "Connect Jira")
    shoot(page, tmp_path / "disconnected.png", "the status page after disconnecting")
    assert not Connection.objects.exists()


@pytest.mark.usefixtures("app_frame")
def test_messages_show_their_level(
    page: Page,
    demo_url: str,
    fake_atlassian: FakeAtlassian,
    oauth_settings: Any,
    tmp_path: Path,
) -> None:
    fake_atlassian.auto_consent = "accept"
    log_in(page, demo_url)
    page.goto("/atlassian/callback/?state=not-ours&code=nothing")
    error = page.locator(".atlassian-oauth-message-error")
    expect(error).to_have_text(f"Error: {BAD_STATE}")
    expect(error).to_have_css("background-color", "rgb(255, 236, 235)")
    expect(error.locator(".atlassian-oauth-message-level")).to_have_css("color", "rgb(174, 42, 25)")
    expect_clickable(page, "Connect Jira")
    shoot(page, tmp_path / "message-error.png", "an error message (a state from elsewhere)")

    oauth_settings(SCOPES="read:jira-work read:me")  # no offline_access: no refresh token
    page.get_by_role("button", name="Connect Jira").click()
    success = page.locator(".atlassian-oauth-message-success")
    warning = page.locator(".atlassian-oauth-message-warning")
    expect(success).to_have_text("Done: Jira is connected as ada@example.com.")
    expect(success).to_have_css("background-color", "rgb(220, 255, 241)")
    expect(warning).to_contain_text("Warning: Atlassian sent no refresh token")
    expect(warning).to_have_css("background-color", "rgb(255, 247, 214)")
    expect(page.locator(".atlassian-oauth-health")).to_contain_text("No refresh token")
    expect_clickable(page, "Reconnect Jira")
    shoot(page, tmp_path / "message-success-warning.png", "success and warning messages")


@pytest.mark.usefixtures("app_frame")
def test_the_status_page_of_a_dead_grant(
    page: Page, demo_url: str, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    fake_atlassian.auto_consent = "accept"
    log_in(page, demo_url)
    page.goto("/atlassian/")
    page.get_by_role("button", name="Connect Jira").click()
    Grant.objects.update(
        status=Grant.Status.NEEDS_RECONNECT,
        state_changed_at=timezone.now(),
        last_refreshed_at=timezone.now(),
    )
    page.goto("/atlassian/")
    expect(page.locator(".atlassian-oauth-health")).to_contain_text("Needs reconnect")
    times = page.locator(".atlassian-oauth-token-times")
    expect(times).to_contain_text("Atlassian stopped accepting this connection at")
    expect(times).to_contain_text("UTC")
    expect(times).not_to_contain_text("valid until")
    expect(times).not_to_contain_text("renewed")
    expect_clickable(page, "Reconnect Jira")
    shoot(page, tmp_path / "status-needs-reconnect.png", "the status page of a dead grant")
