"""The demo's two tenants share one Atlassian app through its connect host, in headless Chromium.

Set up as ``rundemo`` does it (demo_site/connect_host.py): the app's one callback URL is on
``connect.localhost``, which Chromium resolves to loopback itself, and the fake Atlassian knows
no other callback URL. The demo site runs on pytest-django's ``live_server`` with ``DEBUG`` on,
as the demo does (its connect host is plain http on loopback). Screenshots are printed
(``pytest -s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Response, expect

from atlassian_oauth.models import AuthorizationState, Connection
from atlassian_oauth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from demo_site.connect_host import CONNECT_HOST, CONNECT_HOST_NAME, connect_host_callback_url
from demo_site.demo_data import FAKE_APP_NAME, seed
from tests.browser_helpers import browser_page, shoot
from tests.test_browser_demo import connect_button, issues_card, log_in_as_alice

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(
    live_server: Any,
    fake_atlassian: FakeAtlassian,
    settings: Any,
    oauth_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    url: str = live_server.url
    assert url.startswith("http://localhost:"), url
    port = urlsplit(url).port
    assert port is not None
    callback = connect_host_callback_url(port)
    settings.DEBUG = True
    assert CONNECT_HOST in settings.ALLOWED_HOSTS  # the demo's own setting
    oauth_settings(CONNECT_HOST_CALLBACK_URL=callback)
    # The app as the console has it: one callback URL, the connect host's.
    fake_atlassian.register_app(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, [callback], name=FAKE_APP_NAME
    )
    monkeypatch.setitem(fake_atlassian.tenant_names, CONNECT_HOST, CONNECT_HOST_NAME)
    seed()
    return {"url": url, "callback": callback}


@pytest.fixture
def page(
    chromium_path: str, demo: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Page]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see browser_page
    with browser_page(
        chromium_path, demo["url"], viewport={"width": 1100, "height": 800}
    ) as opened:
        yield opened


def test_acme_connects_through_the_connect_host_and_lands_back_home(
    page: Page, demo: dict[str, str], tmp_path: Path
) -> None:
    at_connect_host: list[Response] = []
    page.on(
        "response",
        lambda response: (
            at_connect_host.append(response)
            if urlsplit(response.url).hostname == CONNECT_HOST
            else None
        ),
    )
    log_in_as_alice(page)
    connect_button(issues_card(page), "Connect Jira").click()
    page.wait_for_load_state()
    if "/atlassian/connect/" in page.url:
        connect_button(page.locator("main"), "Connect Jira").click()
    expect(page).to_have_title("Fake Atlassian consent")
    expect(page.locator("#app-name")).to_have_text(FAKE_APP_NAME)
    # All Atlassian sees of the tenant is the connect host.
    expect(page.locator("#tenant")).to_contain_text(CONNECT_HOST_NAME)
    shoot(page, tmp_path / "consent-via-connect-host.png", "the consent page, one app for both")
    page.get_by_role("button", name="Accept").click()

    expect(page.locator("table.issues")).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="Jira is connected as")).to_be_visible()
    expect(page.locator(".brand")).to_contain_text("Acme")
    assert page.url == demo["url"] + "/"
    shoot(page, tmp_path / "home-connected-via-connect-host.png", "Acme, connected")

    # The browser passed the connect host once, which sent it on to Acme's own callback.
    (hop,) = at_connect_host
    assert hop.status == 302
    assert hop.url.startswith(demo["callback"] + "?")
    assert hop.headers["location"].startswith(f"{demo['url']}/atlassian/callback/?")
    assert hop.headers["referrer-policy"] == "no-referrer"
    connection = Connection.objects.get()
    assert (connection.user.username, connection.site.name) == ("alice", "Acme")
    assert not AuthorizationState.objects.exists()


def test_the_connect_host_answers_a_stale_link_with_a_plain_page(
    page: Page, demo: dict[str, str], tmp_path: Path
) -> None:
    response = page.goto(demo["callback"] + "?state=from-an-old-tab&code=spent")
    assert response is not None and response.status == 400
    expect(page).to_have_title("This connection cannot continue")
    expect(page.locator("main")).to_contain_text("not known here")
    expect(page.locator("main")).to_contain_text("Go back to the site where you clicked Connect")
    shoot(page, tmp_path / "connect-host-unknown-state.png", "the connect host's page")
