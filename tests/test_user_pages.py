"""What the end user sees: the connect button in each state, the connect and disconnect pages,
the status page's sentences about time, messages at their levels, and the product's name."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.contrib.sites.models import Site
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import SafeData

from atlassian_oauth.connect import CONNECTED_APPS_URL
from atlassian_oauth.health import product_name
from atlassian_oauth.models import AtlassianApp, AuthorizationState, Connection, Grant
from tests.flow_helpers import connect, messages_of
from tests.page_helpers import app_frame  # noqa: F401  # a fixture
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db

HOST = "localhost"
BUTTON = Template("{% load atlassian_oauth %}{% atlassian_connect_button %}")


def page(client, path: str = "/atlassian/") -> str:
    response = client.get(path, HTTP_HOST=HOST)
    assert response.status_code == 200, response
    return response.content.decode()


def render_button(user, template: Template = BUTTON) -> str:
    request = RequestFactory().get("/projects/", HTTP_HOST=HOST)
    request.user = user
    return template.render(Context({"request": request, "csrf_token": "t0ken"}))


def make_state(grant: Grant, state: str) -> None:
    """Put ``grant`` into the health ``state`` the way refreshes and time would."""
    now = timezone.now()
    changes: dict[str, Any] = {
        "needs_reconnect": {"status": Grant.Status.NEEDS_RECONNECT, "state_changed_at": now},
        "no_refresh_token": {"status": Grant.Status.NO_REFRESH_TOKEN},
        "reconnect_soon": {"consented_at": now - timedelta(days=360)},
        "refresh_failing": {"refresh_failures": 2, "last_failure": Grant.Failure.TRANSIENT},
        "healthy": {},
    }
    Grant.objects.filter(pk=grant.pk).update(**changes[state])


# ---- the button -------------------------------------------------------------------------------


def test_the_button_connects_when_there_is_no_connection(alice, sites):
    html = render_button(alice)
    assert html.startswith(
        '<form class="atlassian-oauth-connect atlassian-oauth-connect" method="post" '
        'action="/atlassian/connect/">'
    )
    assert '<input type="hidden" name="csrfmiddlewaretoken" value="t0ken">' in html
    assert '<input type="hidden" name="next" value="/projects/">' in html
    assert '<button type="submit" class="atlassian-oauth-button">Connect Jira</button>' in html


def test_the_button_says_connected_and_links_to_the_status_page(fake_atlassian, alice, sites):
    connected_grant(fake_atlassian)
    html = render_button(alice).strip()
    assert html == (
        '<a class="atlassian-oauth-connected atlassian-oauth-health-ok" href="/atlassian/">'
        "Jira connected</a>"
    )


@pytest.mark.parametrize("state", ["needs_reconnect", "no_refresh_token", "reconnect_soon"])
def test_the_button_asks_to_reconnect_when_that_is_the_fix(fake_atlassian, alice, sites, state):
    make_state(connected_grant(fake_atlassian), state)
    html = render_button(alice)
    assert 'class="atlassian-oauth-connect atlassian-oauth-reconnect"' in html
    assert '<button type="submit" class="atlassian-oauth-button">Reconnect Jira</button>' in html
    assert "Jira connected" not in html


def test_a_failing_refresh_is_still_connected_with_a_warning(fake_atlassian, alice, sites):
    grant = connected_grant(fake_atlassian)
    make_state(grant, "refresh_failing")
    html = render_button(alice)
    assert 'class="atlassian-oauth-connected atlassian-oauth-health-warning"' in html
    assert ">Jira connected</a>" in html
    # The app's credentials refused: the user cannot fix it, the colour says it is broken.
    Grant.objects.filter(pk=grant.pk).update(last_failure=Grant.Failure.CONFIGURATION)
    html = render_button(alice)
    assert 'class="atlassian-oauth-connected atlassian-oauth-health-error"' in html


@pytest.mark.parametrize("state", ["none", "healthy", "needs_reconnect"])
def test_the_button_costs_one_query(fake_atlassian, alice, sites, state, django_assert_num_queries):
    if state != "none":
        make_state(connected_grant(fake_atlassian), state)
    Site.objects.get_current(RequestFactory().get("/", HTTP_HOST=HOST))  # the sites cache
    with django_assert_num_queries(1):
        render_button(alice)


def test_the_button_asks_logged_out_visitors_to_connect(sites):
    from django.contrib.auth.models import AnonymousUser

    assert ">Connect Jira</button>" in render_button(AnonymousUser())


def test_the_label_and_next_can_be_chosen_and_are_escaped(alice, sites):
    template = Template(
        "{% load atlassian_oauth %}{% atlassian_connect_button label=label next_url=next %}"
    )
    request = RequestFactory().get("/projects/", HTTP_HOST=HOST)
    request.user = alice
    context = {"request": request, "label": "Link <Jira>", "next": '/a/?b=1&c="x"'}
    html = template.render(Context(context))
    assert ">Link &lt;Jira&gt;</button>" in html
    assert 'value="/a/?b=1&amp;c=&quot;x&quot;"' in html


def test_the_button_names_the_product_the_scopes_reach(
    fake_atlassian, alice, sites, oauth_settings
):
    oauth_settings(SCOPES="read:confluence-content.all read:me offline_access")
    assert ">Connect Confluence</button>" in render_button(alice)
    oauth_settings(SCOPES="read:jira-work read:confluence-content.all read:me offline_access")
    assert ">Connect Atlassian</button>" in render_button(alice)
    # A site's own app decides for that site.
    AtlassianApp.objects.create(
        site=sites[0], client_id="own", client_secret="s", scopes="read:jira-work offline_access"
    )
    assert ">Connect Jira</button>" in render_button(alice)
    # Once connected, the grant's scopes decide.
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(scopes="read:confluence-content.all offline_access")
    assert ">Confluence connected</a>" in render_button(alice)


@pytest.mark.parametrize(
    ("scopes", "name"),
    [
        ("read:jira-work offline_access", "Jira"),
        ("read:issue:jira write:jira-work", "Jira"),
        ("read:servicedesk-request", "Jira"),
        ("read:page:confluence offline_access", "Confluence"),
        ("read:jira-work read:confluence-content.all", "Atlassian"),
        ("read:me offline_access", "Atlassian"),
        ("", "Atlassian"),
    ],
)
def test_product_name(scopes, name):
    assert product_name(scopes.split()) == name


# ---- connect -----------------------------------------------------------------------------------


def test_get_connect_shows_the_button_and_starts_nothing(alice_client, accepting):
    response = alice_client.get("/atlassian/connect/", {"next": "/projects/"}, HTTP_HOST=HOST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h2>Connect Jira</h2>" in html
    assert 'method="post" action="/atlassian/connect/"' in html
    assert "csrfmiddlewaretoken" in html
    assert '<input type="hidden" name="next" value="/projects/">' in html
    assert ">Connect Jira</button>" in html
    assert not AuthorizationState.objects.exists()
    assert accepting.counts.get("authorize", 0) == 0


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", "javascript:x"])
def test_get_connect_drops_an_unsafe_next(alice_client, accepting, next_url):
    html = page(alice_client, f"/atlassian/connect/?next={next_url}")
    assert 'name="next"' not in html
    assert "evil.example" not in html


def test_get_connect_when_connected_offers_to_reconnect(alice_client, accepting):
    connect(alice_client)
    html = page(alice_client, "/atlassian/connect/")
    assert "<h2>Reconnect Jira</h2>" in html
    assert "Jira is connected as <strong>ada@example.com</strong>." in html
    assert ">Reconnect Jira</button>" in html


def test_the_button_form_posted_with_next_comes_back_there(alice_client, accepting):
    response = connect(alice_client, next_url="/projects/?tab=2")
    assert response["Location"] == "/projects/?tab=2"


# ---- the status page ---------------------------------------------------------------------------


def times(html: str) -> str:
    match = re.search(r'<p class="atlassian-oauth-token-times">(.*?)</p>', html, re.S)
    assert match, html
    return re.sub(r"[ \n]+", " ", match.group(1)).strip()  # keeps timesince's no-break spaces


def clock(value) -> str:
    local = timezone.localtime(value)
    return f"{date_format(local, 'TIME_FORMAT')} {local.strftime('%Z')}"


def test_a_new_connection_says_until_when_its_token_is_valid(alice_client, accepting):
    connect(alice_client)
    grant = Grant.objects.get()
    shown = times(page(alice_client))
    expires = timezone.localtime(grant.access_token_expires_at)
    iso = expires.isoformat(timespec="seconds")
    assert (
        f'The access token is valid until <time datetime="{iso}">{clock(expires)}</time>' in shown
    )
    assert re.search("\\(in (59\xa0minutes|1\xa0hour)\\)\\.", shown), shown
    assert "UTC" in shown
    assert "Connected at <time datetime=" in shown
    assert "a few seconds ago; not renewed yet." in shown  # not "0 minutes"
    assert "last renewed" not in shown


def test_the_no_refresh_token_warning_says_when_it_stops(alice_client, accepting, oauth_settings):
    oauth_settings(SCOPES="read:jira-work read:me")
    _success, warning = messages_of(connect(alice_client))
    expires = Grant.objects.get().access_token_expires_at
    assert warning == (
        f"Atlassian sent no refresh token, so Jira stops working at {clock(expires)}. An "
        "administrator has to add offline_access to this site's scopes; then reconnect."
    )


def test_a_renewed_connection_says_when_and_how_long_ago(alice_client, accepting):
    connect(alice_client)
    renewed = timezone.now() - timedelta(minutes=3)
    Grant.objects.update(last_refreshed_at=renewed)
    shown = times(page(alice_client))
    assert "The tokens were last renewed at <time datetime=" in shown
    assert f"{clock(renewed)}</time>, 3\xa0minutes ago." in shown
    assert "not renewed yet" not in shown


def test_times_are_in_the_current_timezone_and_name_it(alice_client, accepting, settings):
    settings.TIME_ZONE = "Asia/Kolkata"  # no daylight saving: always IST, +05:30
    connect(alice_client)
    shown = times(page(alice_client))
    assert " IST</time>" in shown
    assert "+05:30" in shown  # the <time> element's machine-readable value
    assert "UTC" not in shown


def test_a_time_on_another_day_shows_its_date(alice_client, accepting):
    connect(alice_client)
    three_days_ago = timezone.now() - timedelta(days=3)
    Grant.objects.update(last_refreshed_at=three_days_ago)
    shown = times(page(alice_client))
    assert date_format(timezone.localtime(three_days_ago), "DATE_FORMAT") in shown
    assert "3\xa0days ago." in shown


def test_a_dead_grant_shows_no_token_validity(alice_client, accepting):
    connect(alice_client)
    Grant.objects.update(last_refreshed_at=timezone.now())
    make_state(Grant.objects.get(), "needs_reconnect")
    html = page(alice_client)
    shown = times(html)
    assert "valid until" not in shown
    assert "renewed" not in shown
    assert shown.startswith("Atlassian stopped accepting this connection at <time")
    assert "Needs reconnect" in html
    assert "Click Reconnect Jira." in html
    assert ">Reconnect Jira</button>" in html


def test_after_a_reconnect_no_old_renewal_is_shown(alice_client, accepting):
    connect(alice_client)
    Grant.objects.update(last_refreshed_at=timezone.now() - timedelta(minutes=30))
    make_state(Grant.objects.get(), "needs_reconnect")
    connect(alice_client)
    grant = Grant.objects.get()
    assert grant.status == Grant.Status.ACTIVE
    assert grant.last_refreshed_at is None
    shown = times(page(alice_client))
    assert "not renewed yet" in shown
    assert "last renewed" not in shown
    assert "stopped accepting" not in shown


def test_an_expired_token_says_so_and_whether_it_renews_itself(alice_client, accepting):
    connect(alice_client)
    Grant.objects.update(access_token_expires_at=timezone.now() - timedelta(minutes=5))
    shown = times(page(alice_client))
    assert "valid until" not in shown
    assert "The access token expired at <time" in shown
    assert "5\xa0minutes ago. A new one is fetched the next time this site uses Jira." in shown
    make_state(Grant.objects.get(), "no_refresh_token")
    shown = times(page(alice_client))
    assert "The access token expired at <time" in shown
    assert "A new one is fetched" not in shown
    assert "not renewed yet" not in shown  # it never will be: no refresh token


# ---- disconnect --------------------------------------------------------------------------------


def test_the_status_page_disconnect_leads_to_the_confirmation(alice_client, accepting):
    connect(alice_client)
    html = page(alice_client)
    assert (
        '<a class="atlassian-oauth-button atlassian-oauth-secondary" href="/atlassian/disconnect/">'
        "Disconnect</a>" in html
    )
    assert 'action="/atlassian/disconnect/"' not in html  # no one-click disconnect


def test_the_confirmation_without_a_connection_says_there_is_nothing_to_do(alice_client, sites):
    html = page(alice_client, "/atlassian/disconnect/")
    assert "Jira is not connected, so there is nothing to disconnect." in html
    assert "<form" not in html.split("<section", 1)[1]


@pytest.mark.usefixtures("app_frame")
def test_the_disconnect_message_links_to_atlassians_connected_apps(alice_client, accepting):
    connect(alice_client)
    page(alice_client)  # shows (and so drops) the connect message
    response = alice_client.post("/atlassian/disconnect/", HTTP_HOST=HOST)
    (message,) = get_messages(response.wsgi_request)
    assert isinstance(message.message, SafeData)
    assert message.level_tag == "success"
    html = page(alice_client)
    assert f'<a href="{CONNECTED_APPS_URL}" rel="noreferrer noopener">connected apps</a>' in html
    assert "Done:</strong> Jira is disconnected." in html
    assert not Connection.objects.exists()


def test_messages_with_what_the_user_or_atlassian_sent_are_not_marked_safe(alice_client, accepting):
    response = connect(alice_client)
    (message,) = get_messages(response.wsgi_request)
    assert not isinstance(message.message, SafeData)  # it holds the account's e-mail address


# ---- messages at their levels ------------------------------------------------------------------


@pytest.mark.usefixtures("app_frame")
def test_each_level_is_shown_in_words_and_by_class(alice_client, accepting, oauth_settings):
    oauth_settings(SCOPES="read:jira-work read:me")  # no offline_access: a warning too
    connect(alice_client)
    html = page(alice_client)
    assert (
        '<li class="atlassian-oauth-message atlassian-oauth-message-success success">'
        '<strong class="atlassian-oauth-message-level">Done:</strong> Jira is connected as '
        "ada@example.com.</li>" in html
    )
    assert (
        '<li class="atlassian-oauth-message atlassian-oauth-message-warning warning">'
        '<strong class="atlassian-oauth-message-level">Warning:</strong> Atlassian sent no '
        "refresh token" in html
    )
    alice_client.post("/atlassian/disconnect/", HTTP_HOST=HOST)
    page(alice_client)
    alice_client.post("/atlassian/disconnect/", HTTP_HOST=HOST)
    html = page(alice_client)
    assert (
        '<li class="atlassian-oauth-message atlassian-oauth-message-info info">'
        '<strong class="atlassian-oauth-message-level">Note:</strong> Jira was not connected.'
        in html
    )
    oauth_settings(CLIENT_ID="", CLIENT_SECRET="")
    alice_client.post("/atlassian/connect/", HTTP_HOST=HOST)
    html = page(alice_client)
    assert (
        '<li class="atlassian-oauth-message atlassian-oauth-message-error error">'
        '<strong class="atlassian-oauth-message-level">Error:</strong> Jira connections are not '
        "configured on this site.</li>" in html
    )


def test_the_success_message_names_the_product(alice_client, accepting, oauth_settings):
    oauth_settings(SCOPES="read:confluence-content.all read:me offline_access")
    assert messages_of(connect(alice_client)) == ["Confluence is connected as ada@example.com."]
    html = page(alice_client)
    assert "<h2>Confluence connection</h2>" in html
