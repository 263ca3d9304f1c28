"""Admin lists: health in every state, the summary, every filter and search, no secret on any
page, and query counts that do not grow with the rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.sites.models import Site
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atlassian_oauth.models import AtlassianApp, Connection, Event, Grant, GrantHealth
from atlassian_oauth.testing import DEFAULT_CLIENT_SECRET
from tests.admin_helpers import OWNERS, RATE_LIMITED, every_state, many_connections
from tests.refresh_helpers import connected_grant

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sites")]

CONNECTIONS = "/admin/atlassian_oauth/connection/"
GRANTS = "/admin/atlassian_oauth/grant/"
EVENTS = "/admin/atlassian_oauth/event/"
APPS = "/admin/atlassian_oauth/atlassianapp/"


@pytest.fixture
def states(fake_atlassian, settings):
    del settings.CELERY_BROKER_URL  # inline refreshes; no beat banner
    return every_state(fake_atlassian)


def get(client, path, **params):
    response = client.get(path, params, HTTP_HOST="localhost")
    assert response.status_code == 200, (path, response.status_code, response.get("Location"))
    return response.content.decode()


def users_listed(html: str) -> set[str]:
    """The usernames in the connection list's rows (the first line of the user cell)."""
    return set(re.findall(r'<th class="field-user_cell"><a href="[^"]+">([^<]+)<div', html))


def accounts_listed(html: str) -> set[str]:
    """The Atlassian accounts in the grant list's rows (the first line of the account cell)."""
    cells = re.findall(r'<th class="field-account_cell"><a href="[^"]+">([^<]*)<wbr>([^<]*)', html)
    return {local + domain for local, domain in cells}


def summary_counts(html: str) -> dict[str, int]:
    found = re.findall(r'data-state="(\w+)"><span class="atlassian-oauth-count">(\d+)</span>', html)
    return {state: int(count) for state, count in found}


# ---- what the list shows --------------------------------------------------------------------


def test_the_list_shows_every_state_with_its_colour_label_since_and_advice(admin_client, states):
    html = get(admin_client, CONNECTIONS)
    assert users_listed(html) == set(OWNERS.values())
    assert 'href="/static/atlassian_oauth/admin.css"' in html  # the badges are coloured
    for state in GrantHealth.values:
        assert f"atlassian-oauth-state-{state}" in html, state
    assert "atlassian-oauth-health-error" in html and "atlassian-oauth-health-ok" in html
    assert "Refresh failing 2 times" in html
    assert "Ask bob to reconnect (Atlassian refused the grant on" in html
    assert "Atlassian is unavailable or rate limiting; next attempt in 4" in html
    assert "fix it under Atlassian apps" in html
    assert re.search("since <time[^>]+>2\xa0days ago</time>", html)  # bob's grant died then
    # The last error is shortened in the cell, whole on hover.
    (shown,) = re.findall(
        f'<span class="atlassian-oauth-error" title="{re.escape(RATE_LIMITED)}">([^<]+)</span>',
        html,
    )
    assert shown.endswith("…") and RATE_LIMITED.startswith(shown[:-1]) and shown != RATE_LIMITED
    assert "erin@<wbr>corp.example" in html and "erin-co" in html  # user email, Atlassian site


def test_the_summary_counts_the_current_filter_and_links_to_each_state(admin_client, states):
    html = get(admin_client, CONNECTIONS)
    assert summary_counts(html) == {state: 1 for state in GrantHealth.values}
    assert 'href="?health=needs_reconnect"' in html
    # The health filter itself does not empty the other counts; search and filters do.
    html = get(admin_client, CONNECTIONS, health="needs_reconnect")
    assert users_listed(html) == {"bob"}
    assert summary_counts(html)[GrantHealth.HEALTHY] == 1
    assert "atlassian-oauth-summary-active" in html
    html = get(admin_client, CONNECTIONS, q="bob")
    assert summary_counts(html) == {
        state: int(state == GrantHealth.NEEDS_RECONNECT) for state in GrantHealth.values
    }
    html = get(admin_client, GRANTS)
    assert summary_counts(html) == {state: 1 for state in GrantHealth.values}


@pytest.mark.parametrize("state", GrantHealth.values)
def test_the_health_filter_on_both_lists(admin_client, states, state):
    assert users_listed(get(admin_client, CONNECTIONS, health=state)) == {OWNERS[state]}
    html = get(admin_client, GRANTS, health=state)
    assert accounts_listed(html) == {f"{OWNERS[state]}@atlassian.example"}


def test_the_expiring_idle_consent_app_and_site_filters(admin_client, states, fake_atlassian):
    now = timezone.now()
    Grant.objects.filter(pk=states[GrantHealth.HEALTHY].pk).update(
        access_token_expires_at=now + timedelta(hours=2)
    )
    Grant.objects.filter(pk=states[GrantHealth.NEEDS_RECONNECT].pk).update(
        access_token_expires_at=now - timedelta(minutes=5)
    )
    Grant.objects.filter(pk=states[GrantHealth.RECONNECT_SOON].pk).update(
        last_refreshed_at=now - timedelta(days=40)
    )
    Grant.objects.filter(pk=states[GrantHealth.NO_REFRESH_TOKEN].pk).update(
        consented_at=now - timedelta(days=400), last_refreshed_at=now - timedelta(days=61)
    )
    hour = users_listed(get(admin_client, CONNECTIONS, expires="hour"))
    assert "frank" in hour and "alice" not in hour and "bob" not in hour
    assert users_listed(get(admin_client, CONNECTIONS, expires="expired")) == {"bob"}
    assert users_listed(get(admin_client, CONNECTIONS, idle="30")) == {"gina", "carol"}
    assert users_listed(get(admin_client, CONNECTIONS, idle="60")) == {"carol"}
    assert users_listed(get(admin_client, CONNECTIONS, idle="80")) == set()
    assert users_listed(get(admin_client, CONNECTIONS, consent="30")) == {"gina", "carol"}
    assert users_listed(get(admin_client, CONNECTIONS, consent="7")) == {"carol"}
    assert users_listed(get(admin_client, CONNECTIONS, consent="passed")) == {"carol"}

    other = Site.objects.get(domain="127.0.0.1")
    Grant.objects.filter(pk=states[GrantHealth.CONFIGURATION_ERROR].pk).update(
        client_id="globex-app"
    )
    AtlassianApp.objects.create(site=other, client_id="globex-app", client_secret="s")
    html = get(admin_client, CONNECTIONS)
    assert "globex-app (127.0.0.1)" in html  # the app filter names the app's site
    assert users_listed(get(admin_client, CONNECTIONS, app="globex-app")) == {"dave"}
    connected_grant(fake_atlassian, username="alice", account_id="acct-alice", domain="127.0.0.1")
    assert users_listed(get(admin_client, CONNECTIONS, site__id__exact=other.pk)) == {"alice"}
    assert accounts_listed(get(admin_client, GRANTS, connections__site__id__exact=other.pk)) == {
        "alice@atlassian.example"
    }


@pytest.mark.parametrize(
    "query",
    [
        "erin",
        "erin@corp.example",
        "acct-erin",
        "erin@atlassian.example",
        "erin-co",
        "https://erin-co.atlassian.net",
    ],
)
def test_search_by_user_email_account_and_cloud_site(admin_client, states, query):
    assert users_listed(get(admin_client, CONNECTIONS, q=query)) == {"erin"}
    assert "erin@<wbr>atlassian.example" in get(admin_client, GRANTS, q=query)


def test_the_columns_sort(admin_client, states):
    for column in range(1, 7):
        get(admin_client, CONNECTIONS, o=str(column))
    for column in range(1, 6):
        get(admin_client, GRANTS, o=str(column))


def test_a_beat_banner_when_no_sweep_ran_lately(admin_client, states, settings):
    assert "atlassian-oauth-beat-late" not in get(admin_client, CONNECTIONS)  # no broker
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    html = get(admin_client, CONNECTIONS)
    assert "No refresh sweep has run yet" in html
    assert "atlassian-oauth-beat-late" in get(admin_client, GRANTS)


# ---- the grant page ---------------------------------------------------------------------------


def test_the_grant_page_is_read_only_with_fingerprints_connections_sites_and_events(
    admin_client, states
):
    grant = states[GrantHealth.REFRESH_FAILING]
    for n in range(25):
        Event.objects.create(
            kind=Event.Kind.REFRESH_FAILED,
            actor=Event.Actor.BEAT,
            grant=grant,
            message=f"failure number {n}",
        )
    path = f"{GRANTS}{grant.pk}/change/"
    html = get(admin_client, path)
    for fieldset in ("Account", "Tokens", "Refresh"):
        assert f">{fieldset}</h2>" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    fingerprints = re.findall(r"sha256:[0-9a-f]{12}", html)
    assert len(set(fingerprints)) == 2  # access and refresh token, both differ
    assert fingerprints == re.findall(r"sha256:[0-9a-f]{12}", get(admin_client, path))
    assert "read:jira-user read:jira-work read:me offline_access" in html  # scopes as text
    assert "Atlassian is unavailable or rate limiting" in html
    assert f'href="/admin/atlassian_oauth/connection/{grant.connections.get().pk}/change/"' in html
    assert "erin-co" in html  # the Atlassian site it reaches
    assert "failure number 24" in html and "failure number 4" not in html  # newest first, 20
    assert "<td>erin</td><td>localhost</td>" in html  # beat events: whose, through the grant
    assert "page 1 of 2" in html
    older = get(admin_client, path, events="2")
    assert "failure number 4" in older and "failure number 24" not in older
    assert f"{EVENTS}?grant__id__exact={grant.pk}" in html
    events = get(admin_client, EVENTS, grant__id__exact=grant.pk)
    assert "failure number 24" in events and "ada@" not in events
    # No grant can be edited, even by a POST a superuser crafts.
    response = admin_client.post(path, {"account_email": "x@y.z"}, HTTP_HOST="localhost")
    assert response.status_code == 403
    grant.refresh_from_db()
    assert grant.account_email == "erin@atlassian.example"


def test_connection_page_is_read_only_and_links_to_its_grant(admin_client, states):
    connection = Connection.objects.get(user__username="bob")
    html = get(admin_client, f"{CONNECTIONS}{connection.pk}/change/")
    assert 'name="_save"' not in html
    assert f'href="{GRANTS}{connection.grant_id}/change/"' in html
    assert "Ask bob to reconnect" in html


# ---- events -----------------------------------------------------------------------------------


def test_beat_events_show_user_email_and_site_through_the_grant(admin_client, states):
    html = get(admin_client, EVENTS, actor="beat")
    assert ">erin<" in html and "erin@corp.example" in html and ">localhost<" in html
    assert users_in_events(get(admin_client, EVENTS, q="erin@corp.example")) >= {"erin"}
    local, other = Site.objects.get(domain="localhost"), Site.objects.get(domain="127.0.0.1")
    # The site filter finds beat events (no site of their own) through the grant.
    assert RATE_LIMITED in get(admin_client, EVENTS, site=local.pk)
    assert RATE_LIMITED not in get(admin_client, EVENTS, site=other.pk)
    assert RATE_LIMITED in get(admin_client, EVENTS, kind__exact="refresh_failed")
    assert RATE_LIMITED not in get(admin_client, EVENTS, actor__exact="user")
    assert RATE_LIMITED in get(admin_client, EVENTS, created_at__year=timezone.now().year)
    assert RATE_LIMITED not in get(admin_client, EVENTS, created_at__year=2001)
    assert RATE_LIMITED not in get(admin_client, EVENTS, kind__exact="connected")


def users_in_events(html: str) -> set[str]:
    return set(re.findall(r'<td class="field-who">([^<]+)</td>', html))


def test_no_one_adds_changes_or_deletes_events(admin_client, states):
    event = Event.objects.first()
    assert event is not None
    html = get(admin_client, f"{EVENTS}{event.pk}/change/")
    assert "deletelink" not in html and 'name="_save"' not in html
    assert "Add event" not in get(admin_client, EVENTS)
    assert (
        admin_client.post(
            f"{EVENTS}{event.pk}/delete/", {"post": "yes"}, HTTP_HOST="localhost"
        ).status_code
        == 403
    )
    response = admin_client.post(
        EVENTS,
        {"action": "delete_selected", "_selected_action": [event.pk], "index": "0"},
        HTTP_HOST="localhost",
    )
    assert response.status_code in (200, 302)
    assert Event.objects.filter(pk=event.pk).exists()
    assert admin_client.get(f"{EVENTS}add/", HTTP_HOST="localhost").status_code == 403


# ---- no secret anywhere --------------------------------------------------------------------


def secrets_now() -> set[str]:
    """Every token and secret stored now, in plaintext and as the ciphertext in the column."""
    found: set[str] = {DEFAULT_CLIENT_SECRET}
    for grant in Grant.objects.all():
        found |= {token for token in (grant.access_token, grant.refresh_token) if token}
    for app in AtlassianApp.objects.all():
        if app.client_secret:
            found.add(app.client_secret)
    with db.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM atlassian_oauth_grant")
        found |= {value for row in cursor.fetchall() for value in row if value}
        cursor.execute("SELECT client_secret FROM atlassian_oauth_atlassianapp")
        found |= {value for (value,) in cursor.fetchall() if value}
    from django.conf import settings

    for key in settings.ATLASSIAN_OAUTH["ENCRYPTION_KEYS"]:
        found |= {key, key.split(":", 1)[-1]}
    return found


def assert_no_secret(html: str, where: str, secrets: set[str]) -> None:
    for secret in secrets:
        assert secret not in html, where


def test_no_admin_page_shows_a_token_code_secret_or_key(admin_client, states):
    app = AtlassianApp.objects.create(
        site=Site.objects.get(domain="127.0.0.1"),
        client_id="globex-app",
        client_secret="globex-client-secret-value",
    )
    Grant.objects.filter(pk=states[GrantHealth.REFRESH_FAILING].pk).update(
        refresh_lock_token="lease-token-abcdef",
        refresh_lock_until=timezone.now() + timedelta(minutes=1),
    )
    secrets = secrets_now() | {"lease-token-abcdef"}
    assert len(secrets) > 20
    pages = [
        CONNECTIONS,
        GRANTS,
        EVENTS,
        APPS,
        f"{APPS}{app.pk}/change/",
        f"{APPS}add/",
        "/admin/atlassian_oauth/",
        "/admin/",
    ]
    pages += [f"{GRANTS}{grant.pk}/change/" for grant in states.values()]
    pages += [f"{CONNECTIONS}{c.pk}/change/" for c in Connection.objects.all()]
    pages += [f"{EVENTS}{e.pk}/change/" for e in Event.objects.all()]
    pages += [f"{CONNECTIONS}?health={state}" for state in GrantHealth.values]
    for path in pages:
        assert_no_secret(get(admin_client, path), path, secrets)
    grant_ids = [grant.pk for grant in states.values()]
    connection_ids = list(Connection.objects.values_list("pk", flat=True))
    for changelist, action, ids in (
        (GRANTS, "refresh_now", grant_ids),
        (CONNECTIONS, "clear_backoff", connection_ids),
        (CONNECTIONS, "disconnect", connection_ids[:2]),
    ):
        selected = {"action": action, "_selected_action": ids}
        for data in ({**selected, "index": "0"}, {**selected, "confirm": "yes"}):
            response = admin_client.post(changelist, data, HTTP_HOST="localhost")
            assert response.status_code == 200, (action, data)
            # Refreshing rotated tokens: the new ones must not show either.
            assert_no_secret(response.content.decode(), f"{action} {data}", secrets | secrets_now())
    response = admin_client.post(
        APPS,
        {"action": "test_credentials", "_selected_action": [app.pk], "index": "0"},
        HTTP_HOST="localhost",
        follow=True,
    )
    assert_no_secret(response.content.decode(), "test credentials", secrets | secrets_now())


# ---- query counts --------------------------------------------------------------------------


def queries_for(client, path: str) -> int:
    with CaptureQueriesContext(db) as queries:
        get(client, path)
    return len(queries)


@pytest.mark.parametrize(
    "path",
    [
        CONNECTIONS,
        GRANTS,
        EVENTS,
        f"{CONNECTIONS}?health=refresh_failing&q=user",
        f"{GRANTS}?q=user&idle=7",
    ],
)
def test_query_counts_do_not_grow_with_the_rows(admin_client, settings, path):
    del settings.CELERY_BROKER_URL
    site = Site.objects.get(domain="localhost")
    many_connections(10, site)
    add_beat_events()
    get(admin_client, path)  # warm the session, content types, site caches
    at_10 = queries_for(admin_client, path)
    many_connections(990, site, start=10)
    add_beat_events()
    assert Connection.objects.count() == 1000
    assert queries_for(admin_client, path) == at_10


def test_the_grant_list_counts_without_a_join_and_reads_the_apps_once(admin_client, settings):
    del settings.CELERY_BROKER_URL
    many_connections(20, Site.objects.get(domain="localhost"))
    get(admin_client, GRANTS)  # warm the session, content types, site caches
    with CaptureQueriesContext(db) as captured:
        get(admin_client, GRANTS)
    sql = [query["sql"].upper() for query in captured.captured_queries]
    counts = [q for q in sql if q.startswith("SELECT COUNT(")]
    assert counts, sql
    for count in counts:
        assert " JOIN " not in count and "GROUP BY" not in count, count
    # The app filter's choices (every grant's client id) are read once, not once per filter set.
    assert sum("DISTINCT" in q and "CLIENT_ID" in q for q in sql) == 1, sql


def add_beat_events() -> None:
    Event.objects.bulk_create(
        [
            Event(
                kind=Event.Kind.REFRESH_FAILED,
                actor=Event.Actor.BEAT,
                grant=grant,
                account_id=grant.account_id,
                message="Atlassian answered 503",
            )
            for grant in Grant.objects.filter(events__isnull=True)
        ]
    )


def test_the_app_index_shows_the_counts_with_links(admin_client, states):
    html = get(admin_client, "/admin/atlassian_oauth/")
    assert summary_counts(html) == {state: 1 for state in GrantHealth.values}
    assert f'href="{CONNECTIONS}?health=refresh_failing"' in html


def test_the_index_tag_counts_only_what_the_admin_may_see(
    client, states, django_user_model, oauth_settings
):
    from django.contrib.auth.models import Group, Permission
    from django.template import Context, Template
    from django.test import RequestFactory

    oauth_settings(ADMIN_SITE_SCOPED=True)
    user = django_user_model.objects.create_user("scoped", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_connection"))
    user.groups.add(Group.objects.create(name="atlassian-oauth:127.0.0.1"))
    request = RequestFactory().get("/admin/")
    request.user = user
    html = Template("{% load atlassian_oauth_admin %}{% atlassian_oauth_health_summary %}").render(
        Context({"request": request})
    )
    assert summary_counts(html) == {state: 0 for state in GrantHealth.values}
    request.user = django_user_model.objects.create_user("nobody", is_staff=True)
    html = Template("{% load atlassian_oauth_admin %}{% atlassian_oauth_health_summary %}").render(
        Context({"request": request})
    )
    assert summary_counts(html) == {}
