"""The user's choice of Atlassian site in headless Chromium: an account reaching two Jira sites.

The demo runs on pytest-django's ``live_server`` with the fake Atlassian in-process, as in
test_browser_demo (whose fixtures and helpers this uses). Ada's account reaches acme and
initech: after connecting, the home page asks for a choice, the status page offers it, and the
home page then lists the chosen site's issues; later initech takes Ada's access away and the
status page says so. Screenshots are printed (``pytest -s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from atlassian_oauth import resources
from atlassian_oauth.models import Connection, Grant, Resource
from atlassian_oauth.testing import ACME_CLOUD_ID, ADA_ACCOUNT_ID
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from tests.admin_helpers import OWNERS, every_state
from tests.browser_helpers import browser_page, shoot
from tests.refresh_helpers import connected_grant
from tests.test_browser_admin import assert_nothing_cut_off
from tests.test_browser_demo import (  # noqa: F401  # demo_url and page are fixtures
    connect_button,
    demo_url,
    issues_card,
    log_in_as_alice,
    page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INITECH_CLOUD_ID = "7e1b5c1a-8f2d-4c1e-9a77-initech00001"
ADMIN_PASSWORD = "admin-browser-password"  # a test user's
ADMIN_WIDTH = 1280  # test_browser_admin's: the lists must fit it


def jira_site(cloud_id: str, name: str) -> dict[str, str]:
    return {"id": cloud_id, "name": name, "url": f"https://{name}.atlassian.net", "product": "jira"}


def ada_reaches(fake: FakeAtlassian, *sites: dict[str, str]) -> None:
    fake.add_account(ADA_ACCOUNT_ID, "ada@example.com", "Ada Lovelace", sites)


def test_choosing_the_jira_site_on_the_status_page(
    page: Page,  # noqa: F811  # test_browser_demo's fixture
    fake_atlassian: FakeAtlassian,
    tmp_path: Path,
) -> None:
    ada_reaches(
        fake_atlassian, jira_site(ACME_CLOUD_ID, "acme"), jira_site(INITECH_CLOUD_ID, "initech")
    )
    log_in_as_alice(page)
    card = issues_card(page)
    connect_button(card, "Connect Jira").click()
    expect(page).to_have_title("Fake Atlassian consent")
    page.get_by_role("button", name="Accept").click()

    # Connected, but which of the two sites? The demo says so instead of guessing.
    expect(page.get_by_role("listitem").filter(has_text="Jira is connected as")).to_be_visible()
    expect(card.locator(".problem")).to_contain_text("reaches several Jira sites")
    expect(card.locator("table")).to_have_count(0)
    shoot(page, tmp_path / "home-choose-a-site.png", "the home page asking for a site")

    card.get_by_role("link", name="Connection details").click()
    choice = page.locator("form.atlassian-oauth-site-choice")
    expect(choice.locator(".atlassian-oauth-site-warning")).to_contain_text(
        "This account reaches several Jira sites. Choose the one this site works with."
    )
    options = choice.get_by_role("radio")
    expect(options).to_have_count(2)
    for option in options.all():
        expect(option).not_to_be_checked()
    expect(choice.get_by_role("group", name="Jira site used here")).to_be_visible()
    shoot(page, tmp_path / "status-choose.png", "the status page with the choice to make")

    # The button without a choice: the browser asks for one (required), nothing is posted.
    choice.get_by_role("button", name="Use this Jira site").click()
    assert Connection.objects.get().jira_resource is None

    choice.get_by_label("initech").check()
    choice.get_by_role("button", name="Use this Jira site").click()
    expect(
        page.get_by_role("listitem").filter(
            has_text="This site now works with the Jira site initech."
        )
    ).to_be_visible()
    expect(page.locator(".atlassian-oauth-site-warning")).to_have_count(0)
    expect(page.get_by_label("initech")).to_be_checked()
    in_use = page.locator(".atlassian-oauth-resources li", has_text="used here")
    expect(in_use).to_have_count(1)
    expect(in_use).to_contain_text("initech")
    shoot(page, tmp_path / "status-chosen.png", "the status page after choosing initech")

    page.goto("/")
    expect(card.locator(".source")).to_have_text("on the Jira site initech")
    expect(card.locator("td.key").first).to_contain_text("INITECH-")
    shoot(page, tmp_path / "home-initech.png", "the home page listing initech's issues")

    # Initech takes Ada's access away; the next daily sync reads it.
    ada_reaches(fake_atlassian, jira_site(ACME_CLOUD_ID, "acme"))
    assert resources.sync(Grant.objects.get().pk, force=True).changes.removed == ("initech (Jira)",)
    page.goto("/")
    expect(card.locator(".problem")).to_contain_text("the one you chose is gone")
    card.get_by_role("link", name="Connection details").click()
    expect(page.locator(".atlassian-oauth-site-warning")).to_contain_text(
        "The Jira site initech you chose is no longer reachable with this account; choose another."
    )
    expect(page.get_by_role("radio")).to_have_count(1)
    shoot(page, tmp_path / "status-site-gone.png", "the status page after initech went")


@pytest.fixture
def admin_page(
    chromium_path: str,
    live_server: Any,
    fake_atlassian: FakeAtlassian,
    sites: Any,
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Page]:
    """The admin on the connection list of every health state, with alice's grant also
    connected on 127.0.0.1 and the Jira site bob chose gone."""
    every_state(fake_atlassian)
    connected_grant(fake_atlassian, username="alice", account_id="acct-alice", domain="127.0.0.1")
    bob = Connection.objects.get(user__username="bob")
    gone = Resource.objects.filter(grant=bob.grant).first()
    assert gone is not None
    Resource.objects.filter(pk=gone.pk).update(removed_at=timezone.now())
    Connection.objects.filter(pk=bob.pk).update(jira_resource=gone)
    django_user_model.objects.create_superuser("root", "root@corp.example", ADMIN_PASSWORD)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see browser_page
    with browser_page(
        chromium_path, live_server.url, viewport={"width": ADMIN_WIDTH, "height": 900}
    ) as opened:
        opened.goto("/admin/")
        opened.get_by_label("Username").fill("root")
        opened.get_by_label("Password").fill(ADMIN_PASSWORD)
        opened.get_by_role("button", name="Log in").click()
        yield opened


@pytest.mark.django_db(transaction=True)
def test_admin_names_shared_grants_and_gone_sites(admin_page: Page, tmp_path: Path) -> None:
    page = admin_page  # noqa: F811  # not test_browser_demo's fixture: the admin's
    page.goto("/admin/atlassian_oauth/connection/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(len(OWNERS) + 1)
    expect(rows.filter(has_text="shared with 1 other site")).to_have_count(2)
    gone = rows.filter(has_text="no longer reachable")
    expect(gone).to_have_count(1)
    expect(gone).to_contain_text("bob")
    shoot(page, tmp_path / "admin-connections-sites.png", "the connection list's site notes")
    assert_nothing_cut_off(page)

    page.get_by_role("link", name="No longer reachable").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bob")
    rows.first.locator("th a").first.click()
    expect(page.locator(".field-sites_used")).to_contain_text(
        "is no longer reachable; the user has to choose another on the status page"
    )
    expect(page.locator(".field-shared_with")).to_contain_text("No other site")
    shoot(page, tmp_path / "admin-connection-gone.png", "a connection whose chosen site went")
