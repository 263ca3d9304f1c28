"""The demo's home page in headless Chromium: the user's Jira issues in each state it can be in.

The demo site runs on pytest-django's ``live_server`` and the fake Atlassian in-process (it
shows its consent page, so the test clicks Accept). Each test saves a screenshot of what the
user sees; the paths are printed (``pytest -s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from atlassian_oauth.models import Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from demo_site.demo_data import seed
from tests.browser_helpers import browser_page, shoot
from tests.refresh_helpers import expire

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH = 1100
ISSUE_KEYS = ["ACME-23", "ACME-21", "ACME-19", "ACME-17", "ACME-12", "ACME-9"]


@pytest.fixture
def demo_url(
    live_server: Any, fake_atlassian: FakeAtlassian, monkeypatch: pytest.MonkeyPatch
) -> str:
    assert fake_atlassian.auto_consent is None  # the consent page is shown, not skipped
    # As rundemo starts its fake: the consent page names the tenant asking.
    monkeypatch.setitem(fake_atlassian.tenant_names, "localhost", "Acme")
    seed()
    url: str = live_server.url
    assert url.startswith("http://localhost:"), url
    return url


@pytest.fixture
def page(chromium_path: str, demo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see browser_page
    with browser_page(chromium_path, demo_url, viewport={"width": WIDTH, "height": 800}) as opened:
        yield opened


def issues_card(page: Page) -> Locator:
    return page.locator("section.issues")


def connect_button(scope: Locator | Page, name: str) -> Locator:
    # A button (a form that POSTs) or a link: the app's tag decides; the words are what count.
    return scope.get_by_role("button", name=name, exact=True).or_(
        scope.get_by_role("link", name=name, exact=True)
    )


def log_in_as_alice(page: Page) -> None:
    page.goto("/")
    page.locator("a.button", has_text="Log in").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-demo-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Welcome, Alice.")).to_be_visible()


def connect_jira(page: Page, consent_shot: Path | None = None) -> None:
    """Click Connect Jira on the home page and Accept on the fake's consent page."""
    connect_button(issues_card(page), "Connect Jira").click()
    page.wait_for_load_state()
    if "/atlassian/connect/" in page.url:
        # A link led to the connect page, which has the button that starts the round trip.
        connect_button(page.locator("main"), "Connect Jira").click()
    expect(page).to_have_title("Fake Atlassian consent")
    expect(page.locator("#app-name")).to_have_text("django-atlassian-oauth demo")
    expect(page.locator("#tenant")).to_contain_text("Acme")
    expect(page.locator("#scopes li", has_text="View Jira issue data")).to_be_visible()
    if consent_shot is not None:
        shoot(page, consent_shot, "the fake Atlassian's consent page")
    page.get_by_role("button", name="Accept").click()
    expect(page.locator("table.issues")).to_be_visible()


def test_the_home_page_lists_the_issues_once_jira_is_connected(page: Page, tmp_path: Path) -> None:
    log_in_as_alice(page)
    card = issues_card(page)
    expect(card.locator(".problem")).to_have_text("Connect Jira to see your issues here.")
    expect(connect_button(card, "Connect Jira")).to_be_visible()
    expect(card.locator("table")).to_have_count(0)
    shoot(page, tmp_path / "home-not-connected.png", "the home page before connecting")

    connect_jira(page, consent_shot=tmp_path / "consent.png")

    expect(page.get_by_role("listitem").filter(has_text="Jira is connected as")).to_be_visible()
    rows = card.locator("tbody tr")
    expect(rows).to_have_count(len(ISSUE_KEYS))
    assert card.locator("td.key").all_inner_texts() == ISSUE_KEYS
    expect(rows.first).to_contain_text("Checkout fails when the basket holds more than 50 items")
    expect(rows.first.locator(".lozenge")).to_have_text("In Progress")
    expect(card.locator(".source")).to_have_text("on the Jira site acme")
    shoot(page, tmp_path / "home-connected.png", "the home page listing the issues")

    # The app's own status page, inside the demo's frame (templates/atlassian_oauth/base.html).
    card.get_by_role("link", name="Connection details").click()
    expect(page.locator(".atlassian-oauth-account")).to_contain_text("ada@example.com")
    expect(page.locator(".brand")).to_contain_text("Acme")
    shoot(page, tmp_path / "status-in-the-demo.png", "the app's status page in the demo")


def test_the_home_page_asks_to_reconnect_when_atlassian_refuses(
    page: Page, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    log_in_as_alice(page)
    connect_jira(page)
    # The user removed the app at Atlassian, and the token ran out: the next refresh is refused.
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    expire(Grant.objects.get(account_id=ADA_ACCOUNT_ID))

    page.reload()
    card = issues_card(page)
    expect(card.locator(".problem")).to_contain_text(
        "Atlassian no longer accepts this connection: connect Jira again"
    )
    expect(
        connect_button(card, "Reconnect Jira").or_(connect_button(card, "Connect Jira"))
    ).to_be_visible()
    expect(card.locator("table")).to_have_count(0)
    shoot(page, tmp_path / "home-reconnect.png", "the home page asking to reconnect")


def test_the_home_page_stays_calm_while_atlassian_is_down(
    page: Page, fake_atlassian: FakeAtlassian, tmp_path: Path
) -> None:
    log_in_as_alice(page)
    connect_jira(page)
    expire(Grant.objects.get(account_id=ADA_ACCOUNT_ID))
    fake_atlassian.inject("refresh", status=503, headers={"Retry-After": "30"}, times=5)

    response = page.reload()
    assert response is not None and response.status == 200
    card = issues_card(page)
    expect(card.locator(".problem")).to_have_text(
        "Jira cannot be reached right now; try again in a moment."
    )
    expect(page.get_by_text("Welcome, Alice.")).to_be_visible()
    shoot(page, tmp_path / "home-unavailable.png", "the home page while Atlassian is down")


def test_each_tenant_links_to_the_other(page: Page, demo_url: str, tmp_path: Path) -> None:
    page.goto("/")
    expect(page.locator(".brand")).to_contain_text("Acme")
    shoot(page, tmp_path / "acme-logged-out.png", "Acme's home page, logged out")
    page.get_by_role("link", name="Go to Globex").click()
    port = demo_url.rsplit(":", 1)[1]
    assert page.url == f"http://127.0.0.1:{port}/"
    expect(page.locator(".brand")).to_contain_text("Globex")
    shoot(page, tmp_path / "globex-logged-out.png", "Globex's home page, logged out")
    page.get_by_role("link", name="Go to Acme").click()
    assert page.url == f"http://localhost:{port}/"
