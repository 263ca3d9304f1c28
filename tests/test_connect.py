"""The connect round trip against the fake Atlassian over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db

from atlassian_oauth import signals
from atlassian_oauth.models import AuthorizationState, Connection, Event, Grant, Resource
from atlassian_oauth.testing import ACME_CLOUD_ID, ADA_ACCOUNT_ID, GRACE_ACCOUNT_ID
from tests.flow_helpers import callback_params, connect, consent, finish, messages_of, start

pytestmark = pytest.mark.django_db


def test_connect_redirects_to_the_consent_page_with_every_parameter(alice_client, accepting):
    url = urlsplit(start(alice_client))
    assert f"{url.scheme}://{url.netloc}" == accepting.url
    assert url.path == "/authorize"
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["audience"] == "api.atlassian.com"
    assert query["client_id"] == "fake-client-id"
    assert "offline_access" in query["scope"].split()
    assert query["redirect_uri"] == "http://localhost/atlassian/callback/"
    assert query["response_type"] == "code"
    assert query["prompt"] == "consent"
    assert len(query["state"]) >= 22  # 128+ bits of urlsafe base64


def test_the_whole_round_trip_stores_grant_connection_and_sites(
    alice, alice_client, accepting, sites, oauth_settings
):
    oauth_settings(SCOPES="read:jira-work read:confluence-content.all read:me offline_access")
    response = connect(alice_client)
    assert response.status_code == 302
    assert response["Location"] == "/"  # the demo's CONNECT_REDIRECT_URL: "home"
    assert response["Referrer-Policy"] == "no-referrer"
    # Scopes for both products: the message names neither.
    assert messages_of(response) == ["Atlassian is connected as ada@example.com."]

    grant = Grant.objects.get()
    assert grant.account_id == ADA_ACCOUNT_ID
    assert grant.status == Grant.Status.ACTIVE
    assert grant.access_token and grant.refresh_token
    assert "offline_access" in grant.scope_list
    connection = Connection.objects.get()
    assert (connection.user, connection.site, connection.grant) == (alice, sites[0], grant)
    # Atlassian lists the same cloud id once for Jira and once for Confluence: both are kept.
    resources = Resource.objects.filter(cloud_id=ACME_CLOUD_ID)
    assert sorted(r.product for r in resources) == ["confluence", "jira"]
    assert Event.objects.filter(kind=Event.Kind.CONNECTED, user=alice).count() == 1
    assert accepting.counts["code_exchange"] == 1


def test_the_status_page_shows_account_sites_scopes_and_disconnect(alice_client, accepting):
    connect(alice_client)
    page = alice_client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert "ada@example.com" in page
    assert "acme" in page.lower()
    assert "<code>offline_access</code>" in page
    assert ">Disconnect<" in page
    assert "Healthy" in page


def test_tokens_are_not_in_the_raw_database_rows(alice_client, accepting):
    connect(alice_client)
    grant = Grant.objects.get()
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM atlassian_oauth_grant")
        raw = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert grant.access_token and grant.access_token not in raw
    assert grant.refresh_token and grant.refresh_token not in raw
    assert "v1:" in raw  # the ciphertexts are there instead


def test_next_is_followed_when_it_stays_on_this_site(alice_client, accepting):
    response = connect(alice_client, next_url="/some/page/?x=1")
    assert response["Location"] == "/some/page/?x=1"


@pytest.mark.parametrize(
    "next_url",
    ["//evil.example/", "https://evil.example/", "javascript:alert(1)", "http://127.0.0.1/x"],
)
def test_an_unsafe_next_is_ignored(alice_client, accepting, next_url):
    response = connect(alice_client, next_url=next_url)
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert Connection.objects.count() == 1


def test_reconnecting_updates_the_grant_in_place(alice_client, accepting):
    connect(alice_client)
    first = Grant.objects.get()
    old_access = first.access_token
    connect(alice_client)
    grant = Grant.objects.get()
    assert grant.pk == first.pk
    assert grant.version == first.version + 1
    assert grant.access_token != old_access
    assert Connection.objects.count() == 1
    assert Event.objects.filter(kind=Event.Kind.CONNECTED).count() == 2


def test_one_account_from_another_user_and_site_shares_the_one_grant(
    alice, bob, client, accepting, sites
):
    client.force_login(alice)
    connect(client)
    connect(client, host="127.0.0.1")
    client.force_login(bob)
    connect(client)
    assert Grant.objects.count() == 1
    assert Connection.objects.count() == 3
    assert set(Connection.objects.values_list("grant", flat=True)) == {Grant.objects.get().pk}


def test_switching_to_another_atlassian_account_drops_the_unused_grant(alice_client, accepting):
    connect(alice_client)
    accepting.consent_account_id = GRACE_ACCOUNT_ID
    connect(alice_client)
    assert list(Grant.objects.values_list("account_id", flat=True)) == [GRACE_ACCOUNT_ID]
    assert Connection.objects.get().grant.account_id == GRACE_ACCOUNT_ID


def test_a_grant_without_refresh_token_is_kept_and_flagged(alice_client, accepting, oauth_settings):
    oauth_settings(SCOPES="read:jira-user read:jira-work read:me")
    response = connect(alice_client)
    grant = Grant.objects.get()
    assert grant.refresh_token is None
    assert grant.status == Grant.Status.NO_REFRESH_TOKEN
    shown = " ".join(messages_of(response))
    assert "offline_access" in shown and "reconnect" in shown
    page = alice_client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert "No refresh token" in page and "offline_access" in page
    assert ">Reconnect Jira<" in page


def test_several_tabs_may_run_flows_at_once(alice_client, accepting):
    first = start(alice_client)
    second = start(alice_client)
    assert AuthorizationState.objects.count() == 2
    for url in (second, first):
        response = finish(alice_client, callback_params(consent(url)))
        assert "Jira is connected as ada@example.com." in messages_of(response)
    assert AuthorizationState.objects.count() == 0


def test_signals_fire_after_commit_with_their_arguments(
    alice, alice_client, accepting, django_capture_on_commit_callbacks
):
    seen: list[tuple[object, ...]] = []

    def on_connected(sender, **kwargs):
        seen.append(("connected", kwargs["created"], kwargs["connection"].user, kwargs["actor"]))

    def on_disconnected(sender, **kwargs):
        seen.append(("disconnected", kwargs["grant_deleted"], kwargs["account_id"]))

    signals.connected.connect(on_connected)
    signals.disconnected.connect(on_disconnected)
    try:
        with django_capture_on_commit_callbacks(execute=False) as pending:
            connect(alice_client)
        assert seen == []  # nothing is announced before the transaction commits
        for callback in pending:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            alice_client.post("/atlassian/disconnect/", HTTP_HOST="localhost")
    finally:
        signals.connected.disconnect(on_connected)
        signals.disconnected.disconnect(on_disconnected)
    assert seen == [
        ("connected", True, alice, "user"),
        ("disconnected", True, ADA_ACCOUNT_ID),
    ]


def test_disconnect_deletes_connection_and_unused_grant(alice_client, accepting):
    connect(alice_client)
    response = alice_client.post("/atlassian/disconnect/", HTTP_HOST="localhost")
    assert response.status_code == 302
    assert Connection.objects.count() == Grant.objects.count() == Resource.objects.count() == 0
    shown = " ".join(messages_of(response))
    assert "https://id.atlassian.com/manage-profile/apps" in shown
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.account_id == ADA_ACCOUNT_ID and event.details["grant_deleted"] is True


def test_disconnect_keeps_a_grant_another_connection_uses(alice_client, accepting):
    connect(alice_client)
    connect(alice_client, host="127.0.0.1")
    alice_client.post("/atlassian/disconnect/", HTTP_HOST="localhost")
    assert Connection.objects.count() == 1
    assert Grant.objects.count() == 1


def test_deleting_a_user_deletes_their_unused_grant_and_logs_it(
    alice, alice_client, accepting, django_capture_on_commit_callbacks
):
    connect(alice_client)
    alice_id = alice.pk
    seen: list[dict[str, object]] = []

    def on_disconnected(sender, **kwargs):
        seen.append(kwargs)

    signals.disconnected.connect(on_disconnected)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            alice.delete()
    finally:
        signals.disconnected.disconnect(on_disconnected)
    assert Grant.objects.count() == 0
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.actor == Event.Actor.SYSTEM
    assert event.account_id == ADA_ACCOUNT_ID
    assert event.details == {
        "user_id": alice_id,
        "site_id": event.details["site_id"],
        "grant_deleted": True,
    }
    assert [s["actor"] for s in seen] == ["system"]


def test_deleting_a_site_logs_the_connections_it_took(alice_client, accepting, sites):
    connect(alice_client)
    connect(alice_client, host="127.0.0.1")
    sites[1].delete()
    assert Connection.objects.count() == 1  # the other site's connection and the grant stay
    assert Grant.objects.count() == 1
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.actor == Event.Actor.SYSTEM and event.details["grant_deleted"] is False


def test_a_disconnect_logs_one_event_not_two(alice_client, accepting):
    connect(alice_client)
    alice_client.post("/atlassian/disconnect/", HTTP_HOST="localhost")
    assert Event.objects.filter(kind=Event.Kind.DISCONNECTED).count() == 1


def test_disconnect_on_get_only_asks_for_confirmation(alice_client, accepting):
    connect(alice_client)
    response = alice_client.get("/atlassian/disconnect/", HTTP_HOST="localhost")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Disconnect Jira?" in page
    assert (
        '<form class="atlassian-oauth-actions" method="post" action="/atlassian/disconnect/">'
        in page
    )
    assert "csrfmiddlewaretoken" in page
    assert ">Disconnect Jira</button>" in page
    assert Connection.objects.count() == 1


def test_disconnect_needs_the_csrf_token(alice, sites, accepting):
    from django.test import Client

    browser = Client()
    browser.force_login(alice)
    connect(browser)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/atlassian/disconnect/", HTTP_HOST="localhost").status_code == 403
    assert Connection.objects.count() == 1


def test_connect_needs_the_csrf_token(alice, sites, accepting):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/atlassian/connect/", HTTP_HOST="localhost").status_code == 403
    assert not AuthorizationState.objects.exists()
    assert accepting.counts.get("authorize", 0) == 0


@pytest.mark.parametrize("path", ["/atlassian/", "/atlassian/connect/", "/atlassian/callback/"])
def test_logged_out_users_are_sent_to_log_in(client, sites, path):
    response = client.get(path, HTTP_HOST="localhost")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_logged_out_disconnect_changes_nothing(client, sites):
    response = client.post("/atlassian/disconnect/", HTTP_HOST="localhost")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_user_sees_only_their_own_connection_on_this_site(alice, bob, client, accepting, sites):
    client.force_login(alice)
    connect(client)
    client.get("/atlassian/", HTTP_HOST="localhost")  # shows (and so drops) alice's messages
    client.force_login(bob)
    page = client.get("/atlassian/", HTTP_HOST="localhost").content.decode()
    assert "ada@example.com" not in page
    assert ">Connect Jira<" in page
    client.force_login(alice)
    other_site = client.get("/atlassian/", HTTP_HOST="127.0.0.1").content.decode()
    assert "ada@example.com" not in other_site


def test_the_template_tag_renders_connect_or_connected(alice_client, accepting):
    home = alice_client.get("/", HTTP_HOST="localhost").content.decode()
    assert ">Connect Jira</button>" in home
    assert 'method="post" action="/atlassian/connect/"' in home
    assert '<input type="hidden" name="next" value="/">' in home
    connect(alice_client)
    home = alice_client.get("/", HTTP_HOST="localhost").content.decode()
    assert 'href="/atlassian/">Jira connected</a>' in home
    assert 'action="/atlassian/connect/"' not in home
