"""Tests that kill mutants of atlassian_oauth/connect.py that `make mutation` found surviving.

Each pins behaviour an admin or an integrator sees: who a failed connect is logged against,
which grant a disconnect's event names, what the ``disconnected`` signal carries, and that a
grant's secrets are wiped before its row is deleted; and which requests the connect host takes
for its own (its scheme's port written out, another port of its name, a tenant on a port); a
callback that loses the single-use race (read, then delete) is told and logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sites.models import Site
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atlassian_oauth import connect, signals
from atlassian_oauth.models import AtlassianApp, AuthorizationState, Connection, Event, Grant
from tests.flow_helpers import callback_params, consent, finish, messages_of, start
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(alice_client, accepting, alice):
    """Alice logged in on the client, with the fake consenting at once (conftest fixtures)."""
    return alice


def test_a_failed_connect_is_logged_against_the_user_site_and_error(alice, client):
    params = callback_params(consent(start(client)))
    params.pop("code", None)
    params["error"] = "server_error"
    finish(client, params)

    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert event.user_id == alice.pk
    assert event.site == Site.objects.get(domain="localhost")
    assert event.actor == Event.Actor.USER
    assert event.message.startswith("Connect failed: authorize_error")
    assert event.details["reason"] == "authorize_error"
    assert event.details["error"] == "server_error"


def test_a_declined_connect_logs_no_error_text(alice, client):
    params = callback_params(consent(start(client)))
    params.pop("code", None)
    params["error"] = "access_denied"
    finish(client, params)

    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert event.details["reason"] == "declined"
    assert event.details["error"] == ""


def test_a_state_from_another_browser_with_a_flow_of_its_own_is_refused(alice, client):
    params = callback_params(consent(start(client)))
    other_browser = Client()
    other_browser.force_login(alice)
    start(other_browser)  # the other browser holds a binding too, just not this flow's
    response = finish(other_browser, params)

    assert "started in another browser" in " ".join(messages_of(response))
    assert not Connection.objects.exists()
    assert Event.objects.get(kind=Event.Kind.CONNECT_FAILED).details["reason"] == "invalid_state"
    # The rightful browser still finishes its own flow.
    assert AuthorizationState.objects.count() == 2
    finish(client, params)
    assert Connection.objects.filter(user=alice).exists()


DEAD_CODE = {"error": "invalid_request", "error_description": "authorization_code is invalid"}
BAD_CLIENT = {"error": "access_denied", "error_description": "Unauthorized"}
#: failure kind -> (what breaks the callback, the event's reason, what the user is told,
#: whether the event keeps an error text, the error log line's start or None)
FAILURES: dict[str, tuple[str, str, str, bool, str | None]] = {
    "no state": ("no_state", "missing_state", "incomplete", False, None),
    "a stranger's state": ("bad_state", "invalid_state", "another browser", False, None),
    "no code": ("no_code", "missing_code", "no authorization code", False, None),
    "too late": ("expired", "expired_state", "took too long", False, None),
    "no app any more": (
        "no_app",
        "configuration",
        "not configured",
        False,
        "Connect failed on localhost: ",
    ),
    "another app": ("other_app", "app_changed", "app changed", False, None),
    "a dead code": ("dead_code", "invalid_code", "took too long", True, None),
    "wrong credentials": (
        "bad_client",
        "configuration",
        "refused this site's app credentials",
        True,
        "Atlassian refused the client credentials of localhost: ",
    ),
    "Atlassian down": ("down", "atlassian_error", "could not be reached", True, None),
}


@pytest.mark.parametrize("kind", FAILURES.values(), ids=FAILURES.keys())
def test_every_failed_callback_is_logged_against_the_user_and_site(
    alice, client, fake_atlassian, oauth_settings, caplog, kind
):
    breakage, reason, told, has_error, log_line = kind
    params = callback_params(consent(start(client)))
    if breakage == "no_state":
        del params["state"]
    elif breakage == "bad_state":
        params["state"] = "not-a-state-we-issued"
    elif breakage == "no_code":
        del params["code"]
    elif breakage == "expired":
        AuthorizationState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    elif breakage == "no_app":
        oauth_settings(CLIENT_ID="", CLIENT_SECRET="")
    elif breakage == "other_app":
        oauth_settings(CLIENT_ID="another-app", CLIENT_SECRET="x")
    elif breakage == "dead_code":
        fake_atlassian.inject(kind="code_exchange", status=400, body=DEAD_CODE)
    elif breakage == "bad_client":
        fake_atlassian.inject(kind="code_exchange", status=401, body=BAD_CLIENT)
    elif breakage == "down":
        fake_atlassian.inject(kind="code_exchange", status=503)

    with caplog.at_level("ERROR", logger="atlassian_oauth.connect"):
        response = finish(client, params)

    assert told in " ".join(messages_of(response)), messages_of(response)
    assert not Connection.objects.exists()
    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert event.user_id == alice.pk and event.site == Site.objects.get(domain="localhost")
    assert event.details["reason"] == reason
    error = event.details.get("error", "")
    if has_error:
        assert error and error != "None", f"the event lost Atlassian's answer: {error!r}"
    else:
        assert error == ""
    logged = [r.getMessage() for r in caplog.records if r.name == "atlassian_oauth.connect"]
    if log_line is None:
        assert logged == []
    else:
        assert len(logged) == 1 and logged[0].startswith(log_line), logged
        assert not logged[0].endswith(": None")


@pytest.fixture
def shared_grant(fake_atlassian) -> Grant:
    """One grant that two users' connections on one site share."""
    connected_grant(fake_atlassian, username="alice")
    return connected_grant(fake_atlassian, username="bob")


@pytest.fixture
def disconnected_calls() -> Any:
    calls: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        kwargs.pop("signal", None)
        calls.append(kwargs)

    signals.disconnected.connect(receiver, weak=False, dispatch_uid="test_mutants_connect")
    yield calls
    signals.disconnected.disconnect(dispatch_uid="test_mutants_connect")


def test_disconnecting_one_of_two_connections_keeps_and_names_the_grant(
    shared_grant, disconnected_calls, django_capture_on_commit_callbacks
):
    alice = Connection.objects.select_related("user", "site", "grant").get(user__username="alice")
    with django_capture_on_commit_callbacks(execute=True):
        deleted = connect.disconnect(alice, actor=Event.Actor.ADMIN)

    assert deleted is False
    assert Grant.objects.filter(pk=shared_grant.pk).exists()
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.grant_id == shared_grant.pk, "the event lost the grant that is still in use"
    assert event.message == f"Disconnected Atlassian account {shared_grant.account_id}"
    assert event.details["grant_deleted"] is False
    assert disconnected_calls == [
        {
            "sender": Connection,
            "user": alice.user,
            "site": alice.site,
            "account_id": shared_grant.account_id,
            "grant_deleted": False,
            "actor": Event.Actor.ADMIN,
        }
    ]


def test_disconnecting_the_last_connection_says_the_tokens_are_gone(
    fake_atlassian, disconnected_calls, django_capture_on_commit_callbacks
):
    grant = connected_grant(fake_atlassian)
    connection = Connection.objects.select_related("user", "site", "grant").get()
    with django_capture_on_commit_callbacks(execute=True):
        assert connect.disconnect(connection, actor=Event.Actor.USER) is True

    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.grant_id is None
    assert event.account_id == grant.account_id
    assert event.message == (
        f"Disconnected Atlassian account {grant.account_id} and deleted its tokens"
    )
    ((call),) = disconnected_calls
    assert call["grant_deleted"] is True and call["actor"] == Event.Actor.USER
    assert call["user"] == connection.user and call["site"] == connection.site


def test_an_unused_grant_has_its_secrets_wiped_before_its_row_is_deleted(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    connection = Connection.objects.select_related("user", "site", "grant").get()

    with CaptureQueriesContext(db_connection) as queries:
        assert connect.disconnect(connection, actor=Event.Actor.USER) is True

    # MySQL quotes names with backticks, the others with double quotes.
    sql = [query["sql"].replace("`", '"') for query in queries.captured_queries]
    wipes = [
        index
        for index, text in enumerate(sql)
        if text.startswith('UPDATE "atlassian_oauth_grant"')
        and '"access_token" = NULL' in text
        and '"refresh_token" = NULL' in text
        and re.search(rf'"id" (= {grant.pk}\b|IN \([^)]*\b{grant.pk}\b)', text)
    ]
    deletes = [
        i for i, text in enumerate(sql) if text.startswith('DELETE FROM "atlassian_oauth_grant"')
    ]
    assert wipes, f"no UPDATE wiped both tokens of the grant: {sql}"
    assert deletes and wipes[0] < deletes[0], "the row was deleted before its secrets were wiped"
    assert not Grant.objects.filter(pk=grant.pk).exists()


def test_a_site_with_its_own_app_connects_through_that_app(alice, client, fake_atlassian):
    fake_atlassian.register_app("tenant-app", "tenant-secret")
    site = Site.objects.get(domain="localhost")
    AtlassianApp.objects.create(
        site=site,
        client_id="tenant-app",
        client_secret="tenant-secret",
        scopes="read:jira-work read:me offline_access",
        callback_url="http://localhost/atlassian/callback/",
    )
    consent_url = start(client)
    assert "client_id=tenant-app" in consent_url
    finish(client, callback_params(consent(consent_url)))

    connection = Connection.objects.select_related("grant").get(user=alice, site=site)
    assert connection.grant.client_id == "tenant-app"


# ---- the connect host: which requests are its own ------------------------------------------------

CONNECT_HOST = "connect.example.com"
TENANT = "acme.example.com"
CALLBACK_PATH = "/atlassian/callback/"


def pending_flow(user: Any, domain: str) -> str:
    """Start a flow for ``user`` on the site of ``domain`` (made if need be); return its state."""
    site, _ = Site.objects.get_or_create(domain=domain, defaults={"name": domain})
    url = connect.begin(user=user, site=site, session=SessionStore(), redirect_uri="unused")
    return parse_qs(urlsplit(url).query)["state"][0]


def bounce_at(host: str, state: str, *, secure: bool) -> connect.Bounce | None:
    return connect.bounce(host=host, secure=secure, state=state, path=CALLBACK_PATH, query="s=1")


@pytest.mark.parametrize(
    ("registered", "host", "secure", "scheme"),
    [
        (f"https://{CONNECT_HOST}{CALLBACK_PATH}", f"{CONNECT_HOST}:443", True, "https"),
        (f"http://{CONNECT_HOST}{CALLBACK_PATH}", f"{CONNECT_HOST}:80", False, "http"),
    ],
    ids=["https-443", "http-80"],
)
def test_the_connect_host_knows_itself_with_its_schemes_port_written_out(
    fake_atlassian, oauth_settings, settings, django_user_model, registered, host, secure, scheme
):
    settings.DEBUG = not secure  # http is handed on only while DEBUG is on
    oauth_settings(CONNECT_HOST_CALLBACK_URL=registered)
    state = pending_flow(django_user_model.objects.create(username="ada"), TENANT)
    handed = bounce_at(host, state, secure=secure)
    assert handed == connect.Bounce(location=f"{scheme}://{TENANT}{CALLBACK_PATH}?s=1")


def test_another_port_of_the_connect_hosts_name_is_not_the_connect_host(
    fake_atlassian, oauth_settings, django_user_model
):
    oauth_settings(CONNECT_HOST_CALLBACK_URL=f"https://{CONNECT_HOST}:8443{CALLBACK_PATH}")
    state = pending_flow(django_user_model.objects.create(username="ada"), TENANT)
    assert bounce_at(f"{CONNECT_HOST}:8443", state, secure=True) is not None  # the control
    assert bounce_at(CONNECT_HOST, state, secure=True) is None
    assert bounce_at(f"{CONNECT_HOST}:9443", state, secure=True) is None


@pytest.mark.parametrize("domain", [f"{CONNECT_HOST}:8000", CONNECT_HOST], ids=["port", "bare"])
def test_a_connect_host_that_is_a_tenant_on_a_port_finishes_its_own_flows_there(
    fake_atlassian, oauth_settings, settings, django_user_model, domain
):
    """Its Site's domain with the port, or without (the sites framework finds it either way):
    the callback runs there, never redirecting to itself."""
    settings.DEBUG = True
    oauth_settings(CONNECT_HOST_CALLBACK_URL=f"http://{CONNECT_HOST}:8000{CALLBACK_PATH}")
    state = pending_flow(django_user_model.objects.create(username="ada"), domain)
    assert bounce_at(f"{CONNECT_HOST}:8000", state, secure=False) is None
    # The control: another tenant's flow at the same host is handed on.
    other = pending_flow(django_user_model.objects.create(username="bob"), TENANT)
    assert bounce_at(f"{CONNECT_HOST}:8000", other, secure=False) == connect.Bounce(
        location=f"http://{TENANT}:8000{CALLBACK_PATH}?s=1"
    )


# ---- single use, where the database cannot delete and return in one statement -------------------


def test_a_callback_that_loses_the_single_use_race_is_told_and_logged(
    alice, client, fake_atlassian, monkeypatch
):
    """Without DELETE ... RETURNING (MySQL, MariaDB) the flow is read, then deleted: a rival
    callback with the same state deleting it in between (run here just before our DELETE, by
    a Django execute_wrapper) wins, and this one fails as "already used", logged against the
    user and the site, and exchanges no code."""
    monkeypatch.setattr(connect, "_deletes_return_rows", lambda db: False, raising=False)
    params = callback_params(consent(start(client)))
    table = AuthorizationState._meta.db_table
    rivals: list[int] = []

    def rival_deletes_first(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        if sql.lstrip().upper().startswith("DELETE") and table in sql and not rivals:
            rivals.append(0)  # (the rival's own DELETE passes through here too)
            rivals[0] = AuthorizationState.objects.all()._raw_delete(db_connection.alias)
        return execute(sql, params, many, context)

    exchanges = fake_atlassian.counts.get("code_exchange", 0)
    with db_connection.execute_wrapper(rival_deletes_first):
        response = finish(client, params)

    assert rivals == [1], "the flow was never deleted: the race was not run"
    assert "already used" in " ".join(messages_of(response)), messages_of(response)
    assert not Connection.objects.exists()
    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert event.user_id == alice.pk and event.site == Site.objects.get(domain="localhost")
    assert event.details["reason"] == "invalid_state"
    assert fake_atlassian.counts.get("code_exchange", 0) == exchanges


@pytest.mark.parametrize("shared", [False, True], ids=["its-own-grant", "a-shared-grant"])
def test_a_connection_removed_with_its_user_says_so_and_whether_the_tokens_went(
    fake_atlassian, django_user_model, shared
):
    grant = connected_grant(fake_atlassian, username="alice")
    if shared:
        connected_grant(fake_atlassian, username="bob")
    django_user_model.objects.get(username="alice").delete()  # a cascade, not disconnect()

    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert event.actor == Event.Actor.SYSTEM and event.account_id == grant.account_id
    because = "Connection removed because its user, site or grant was deleted"
    assert event.message == (because if shared else f"{because} (the grant's tokens too)")
    assert event.details["grant_deleted"] is not shared
    assert Grant.objects.filter(pk=grant.pk).exists() is shared
