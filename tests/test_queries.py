"""The query counts of the hot paths (issue 12), as ordinary tests: they must stay constant.

``make bench`` measures the time these paths take; here only what must not grow: the queries
of a refresh, of ``get_access_token``, of a session's request and its ``jira_url()``, of the
connect callback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.db import connection
from django.utils import timezone

from atlassian_oauth import api, connect, refresh, sweep
from atlassian_oauth.fields import Ciphertext
from atlassian_oauth.models import AuthorizationState, Connection, Event, Grant
from atlassian_oauth.testing import ACME_CLOUD_ID
from tests.flow_helpers import callback_params, consent, finish, messages_of, start
from tests.refresh_helpers import connected_grant, expire

pytestmark = pytest.mark.django_db

MYSELF = "rest/api/3/myself"


def returns_from_update() -> bool:
    return refresh._updates_return_rows(connection)


@pytest.fixture
def alice_on_localhost(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    user = get_user_model().objects.get(username="alice")
    return user, Site.objects.get(domain="localhost"), grant


def test_a_routine_refresh_costs_three_queries(fake_atlassian, django_assert_num_queries):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    # The read, the claim (reading the row back), the write (releasing the lease); no event
    # row, no second read. Without UPDATE ... RETURNING (MySQL, MariaDB) the claim reads apart.
    with django_assert_num_queries(3 if returns_from_update() else 4):
        outcome = sweep.refresh_if_due(grant.pk, actor=Event.Actor.BEAT)
    assert outcome.result == sweep.Result.REFRESHED
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.version == grant.version + 1 and stored.refresh_lock_token == ""
    assert fake_atlassian.counts["refresh"] == 1


def test_a_grant_that_is_not_due_costs_one_query(fake_atlassian, django_assert_num_queries):
    grant = connected_grant(fake_atlassian)
    with django_assert_num_queries(1):
        outcome = sweep.refresh_if_due(grant.pk, actor=Event.Actor.BEAT)
    assert outcome.result == sweep.Result.FRESH


def test_a_recovering_refresh_adds_only_its_event(fake_atlassian, django_assert_num_queries):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    Grant.objects.filter(pk=grant.pk).update(refresh_failures=2, next_refresh_at=None)
    with django_assert_num_queries(4 if returns_from_update() else 5):
        outcome = sweep.refresh_if_due(grant.pk, actor=Event.Actor.BEAT)
    assert outcome.result == sweep.Result.REFRESHED
    assert Event.objects.get().kind == Event.Kind.REFRESHED


def test_the_claim_reads_the_row_back_as_a_select_would(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    lease = refresh._claim(grant.pk)
    assert lease is not None
    claimed, selected = lease.grant, Grant.objects.get(pk=grant.pk)
    for field in Grant._meta.concrete_fields:
        if field.name in ("access_token", "refresh_token"):
            continue
        value, expected = getattr(claimed, field.attname), getattr(selected, field.attname)
        assert value == expected and type(value) is type(expected), field.name
    assert claimed.refresh_lock_token == str(lease)
    assert claimed.refresh_lock_until is not None and claimed.refresh_lock_until > timezone.now()
    # The ciphertexts come back as ciphertexts, bound to the row: they decrypt.
    assert isinstance(claimed.__dict__["access_token"], Ciphertext)
    assert claimed.access_token == selected.access_token
    assert claimed.refresh_token == selected.refresh_token
    assert refresh._claim(grant.pk) is None  # held: nobody else claims it


def test_get_access_token_of_a_fresh_token_is_one_query(
    alice_on_localhost, django_assert_num_queries
):
    user, site, grant = alice_on_localhost
    with django_assert_num_queries(1) as captured:
        token = api.get_access_token(user, site)
    assert token == Grant.objects.get(pk=grant.pk).access_token
    (query,) = captured.captured_queries
    assert "ORDER BY" not in query["sql"]
    assert "refresh_token" not in query["sql"]  # only the columns a fresh token needs


def test_get_access_token_refreshes_a_due_token(alice_on_localhost, fake_atlassian):
    user, site, grant = alice_on_localhost
    expire(grant)
    token = api.get_access_token(user, site)
    assert token == Grant.objects.get(pk=grant.pk).access_token != grant.access_token
    assert fake_atlassian.counts["refresh"] == 1


def test_get_access_token_says_who_is_not_connected(alice_on_localhost, django_user_model):
    _, site, _ = alice_on_localhost
    bob = django_user_model.objects.create(username="bob")
    with pytest.raises(api.NotConnected, match="has not connected Atlassian on localhost"):
        api.get_access_token(bob, site)


def test_a_dead_grant_gets_no_token(alice_on_localhost):
    user, site, grant = alice_on_localhost
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    with pytest.raises(api.ReconnectRequired):
        api.get_access_token(user, site)


def test_a_session_request_costs_two_queries_and_jira_url_one_per_session(
    alice_on_localhost, fake_atlassian, django_assert_num_queries
):
    user, site, _ = alice_on_localhost
    url = api.jira_url(ACME_CLOUD_ID, MYSELF)
    # The connection with its grant, then the token as the row has it when the request goes.
    with django_assert_num_queries(2):
        assert api.get_session(user, site).get(url).status_code == 200
    session = api.get_session(user, site)
    with django_assert_num_queries(1):
        first = session.jira_url(MYSELF)
    with django_assert_num_queries(0):
        assert session.jira_url(MYSELF) == first == url
        assert session.confluence_url("wiki", cloud_id="x").endswith("/ex/confluence/x/wiki")
    # The token is kept too: the next request of the session needs no query.
    session.get(url)
    with django_assert_num_queries(0):
        assert session.get(url).status_code == 200


def test_jira_url_needs_no_query_once_the_connection_has_its_default_site(
    alice_client, accepting, alice, django_assert_num_queries
):
    # A real connect: the account's only Jira site becomes the connection's default, loaded
    # with the connection by get_session().
    assert finish(alice_client, callback_params(consent(start(alice_client)))).status_code == 302
    site = Site.objects.get(domain="localhost")
    with django_assert_num_queries(1):
        session = api.get_session(alice, site)
    with django_assert_num_queries(0):
        assert session.jira_url(MYSELF) == api.jira_url(ACME_CLOUD_ID, MYSELF)
        assert session.default_site("jira").name
    assert session.connection.site == site and session.connection.grant.account_id


def test_get_connection_loads_the_rows_as_select_related_would(alice_client, accepting, alice):
    assert finish(alice_client, callback_params(consent(start(alice_client)))).status_code == 302
    site = Site.objects.get(domain="localhost")
    loaded = api.get_connection(alice, site)
    expected = Connection.objects.select_related(
        "grant", "site", "jira_resource", "confluence_resource"
    ).get(user=alice, site=site)
    assert loaded.jira_resource is not None and expected.jira_resource is not None
    pairs: list[tuple[Any, Any]] = [
        (loaded, expected),
        (loaded.grant, expected.grant),
        (loaded.site, expected.site),
        (loaded.jira_resource, expected.jira_resource),
    ]
    for ours, theirs in pairs:
        assert type(ours) is type(theirs) and not ours._state.adding
        for field in type(theirs)._meta.concrete_fields:
            value, wanted = getattr(ours, field.attname), getattr(theirs, field.attname)
            assert value == wanted and type(value) is type(wanted), field.name
    assert loaded.confluence_resource is None  # a left join that found none
    assert loaded.grant.access_token == expected.grant.access_token  # decrypts, bound to the row


def test_sessions_share_one_kept_alive_connection(alice_on_localhost, fake_atlassian, monkeypatch):
    from urllib3.connection import HTTPConnection

    from atlassian_oauth import client

    connects: list[object] = []
    connect = HTTPConnection.connect

    def counting(self: HTTPConnection) -> None:
        connects.append(self)
        connect(self)

    monkeypatch.setattr(HTTPConnection, "connect", counting)
    user, site, _ = alice_on_localhost
    url = api.jira_url(ACME_CLOUD_ID, MYSELF)
    client.reset_session()
    for _ in range(3):
        with api.get_session(user, site) as session:  # closing keeps the process's pools
            assert session.get(url).status_code == 200
    assert len(connects) == 1, "a session opened a connection of its own"
    assert session.adapters["http://"] is client.http_session().adapters["http://"]


def test_an_expired_session_token_is_renewed_through_the_refresh(
    alice_on_localhost, fake_atlassian
):
    user, site, grant = alice_on_localhost
    session = api.get_session(user, site)
    url = api.jira_url(ACME_CLOUD_ID, MYSELF)
    assert session.get(url).status_code == 200
    Grant.objects.filter(pk=grant.pk).update(
        access_token_expires_at=timezone.now() + timedelta(seconds=30)
    )
    session._fresh_token = None  # as a session made after the token got close to expiry
    assert session.get(url).status_code == 200
    assert fake_atlassian.counts["refresh"] == 1


def test_the_keepalive_rule_in_python_is_the_sweeps_rule_in_sql(oauth_settings):
    from atlassian_oauth.models import keepalive_due, keepalive_is_due

    oauth_settings(KEEPALIVE_AFTER=30 * 86400)
    now = timezone.now()
    day = timedelta(days=1)
    cases: dict[str, dict[str, Any]] = {
        "fresh": {"refresh_token_issued_at": now, "last_refreshed_at": None},
        "idle": {"refresh_token_issued_at": now - 31 * day, "last_refreshed_at": None},
        "idle, refreshed lately": {
            "refresh_token_issued_at": now - 31 * day,
            "last_refreshed_at": now - day,
        },
        "idle, refreshed long ago": {
            "refresh_token_issued_at": now - 40 * day,
            "last_refreshed_at": now - 31 * day,
        },
        "never issued": {"refresh_token_issued_at": None, "last_refreshed_at": None},
        "on the cutoff": {
            "refresh_token_issued_at": now - 30 * day,
            "last_refreshed_at": now - 30 * day,
        },
    }
    grants = {
        name: Grant.objects.create(
            client_id="app",
            account_id=name,
            access_token="a",
            refresh_token="r",
            access_token_expires_at=now + day,
            consented_at=now,
            **fields,
        )
        for name, fields in cases.items()
    }
    in_sql = set(Grant.objects.filter(keepalive_due(now)).values_list("account_id", flat=True))
    in_python = {name for name, grant in grants.items() if keepalive_is_due(grant, now)}
    assert in_python == in_sql == {"idle", "idle, refreshed long ago", "on the cutoff"}


# ---- the connect callback ------------------------------------------------------------------

#: The callback's queries outside the grant's transaction: Django's session and user, the
#: pending flow taken (DELETE ... RETURNING), the site's own app looked up.
CALLBACK_BEFORE = 4
#: In the transaction: its start and end, the grant read for update and written (with the sites'
#: read time), the connection read for update and written, the event; resources.store's two
#: (the sites read, the only site set on the grant's connections without a default; removed
#: sites are looked at only when there are any, and the caller's connection gets its default
#: without reading it back).
CALLBACK_TRANSACTION = 2 + 2 + 2 + 1 + 2


def callback_queries_expected() -> int:
    """The callback's queries here: one more where the pending flow is read, then deleted
    (MySQL/MariaDB, which have no DELETE ... RETURNING)."""
    return (
        CALLBACK_BEFORE
        + CALLBACK_TRANSACTION
        + (0 if connect._deletes_return_rows(connection) else 1)
    )


def test_the_callback_of_a_first_connect_costs_a_constant_few_queries(
    alice_client, accepting, django_assert_num_queries
):
    params = callback_params(consent(start(alice_client)))
    # A new grant and connection: one more for the one site's insert.
    with django_assert_num_queries(callback_queries_expected() + 1):
        response = finish(alice_client, params)
    assert response.status_code == 302, messages_of(response)
    assert Connection.objects.get().jira_resource is not None


def test_the_callback_of_a_reconnect_costs_a_constant_few_queries(
    alice_client, accepting, bob, django_assert_num_queries
):
    def callback_queries() -> int:
        params = callback_params(consent(start(alice_client)))
        with django_assert_num_queries(callback_queries_expected()) as captured:
            response = finish(alice_client, params)
        assert response.status_code == 302, messages_of(response)
        return len(captured.captured_queries)

    params = callback_params(consent(start(alice_client)))
    assert finish(alice_client, params).status_code == 302
    callback_queries()  # alice again: her grant and connection updated
    alice_client.force_login(bob)
    callback_queries()  # bob, with the same Atlassian account: its grant, a new connection
    assert Grant.objects.get().version == 2
    assert Connection.objects.filter(jira_resource__isnull=False).count() == 2


def test_without_delete_returning_the_state_is_still_single_use(
    alice_client, accepting, monkeypatch
):
    # MySQL has no DELETE ... RETURNING: the flow is read, then deleted by its primary key.
    monkeypatch.setattr(connect, "_deletes_return_rows", lambda db: False)
    params = callback_params(consent(start(alice_client)))
    assert "connected as" in " ".join(messages_of(finish(alice_client, params)))
    assert not AuthorizationState.objects.exists()
    replayed = messages_of(finish(alice_client, params))
    assert any("expired or was started in another browser" in m for m in replayed)
    assert Event.objects.filter(kind=Event.Kind.CONNECTED).count() == 1
