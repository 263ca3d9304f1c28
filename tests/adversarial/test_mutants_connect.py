"""Tests that kill mutants of atlassian_oauth/connect.py that `make mutation` found surviving.

Each pins behaviour an admin or an integrator sees: who a failed connect is logged against,
which grant a disconnect's event names, what the ``disconnected`` signal carries, and that a
grant's secrets are wiped before its row is deleted.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from atlassian_oauth import connect, signals
from atlassian_oauth.models import Connection, Event, Grant
from demo_site.demo_data import seed
from tests.flow_helpers import callback_params, consent, finish, start
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, fake_atlassian):
    seed()
    fake_atlassian.auto_consent = "accept"
    user = get_user_model().objects.get(username="alice")
    client.force_login(user)
    return user


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

    sql = [query["sql"] for query in queries.captured_queries]
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
