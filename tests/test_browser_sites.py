"""The user's choice of Atlassian site in headless Chromium: an account reaching two Jira sites.

The demo runs on pytest-django's ``live_server`` with the fake Atlassian in-process, as in
test_browser_demo (whose fixtures and helpers this uses). Ada's account reaches acme and
initech: after connecting, the home page asks for a choice, the status page offers it, and the
home page then lists the chosen site's issues; later initech takes Ada's access away and the
status page says so. Screenshots are printed (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from atlassian_oauth import resources
from atlassian_oauth.models import Connection, Grant
from atlassian_oauth.testing import ACME_CLOUD_ID, ADA_ACCOUNT_ID
from atlassian_oauth.testing.fake_atlassian import FakeAtlassian
from tests.test_browser_demo import (  # noqa: F401  # demo_url and page are fixtures
    connect_button,
    demo_url,
    issues_card,
    log_in_as_alice,
    page,
    shoot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INITECH_CLOUD_ID = "7e1b5c1a-8f2d-4c1e-9a77-initech00001"


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
