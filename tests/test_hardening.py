"""Edge cases a review found: tokens in repr, tokens sent off-site, refresh storms, races."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth import client, exceptions, refresh
from atlassian_oauth.api import get_session
from atlassian_oauth.models import Event, Grant
from tests.flow_helpers import callback_params, consent, finish, messages_of, start
from tests.refresh_helpers import connected_grant, expire, set_stored_tokens

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_session(sites, alice, fake_atlassian):
    grant = connected_grant(fake_atlassian)
    return grant, get_session(alice, Site.objects.get(domain="localhost"))


def test_a_fresh_token_does_not_show_in_its_repr(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION)
    assert token.access_token not in repr(token)


def test_the_session_refuses_to_send_its_token_off_atlassian(alice_session, fake_atlassian):
    _grant, session = alice_session
    with pytest.raises(ValueError, match="only sends requests under"):
        session.get("https://evil.example/collect")
    with pytest.raises(ValueError):
        session.get(fake_atlassian.url + ".evil.example/")  # a look-alike prefix
    assert session.get(session.jira_url("rest/api/3/myself")).status_code == 200


def test_a_401_right_after_a_refresh_does_not_rotate_again(alice_session, fake_atlassian):
    grant, session = alice_session
    Grant.objects.filter(pk=grant.pk).update(last_refreshed_at=timezone.now())
    fake_atlassian.inject(kind="jira", status=401, times=2)
    response = session.get(session.jira_url("rest/api/3/myself"))
    assert response.status_code == 401  # handed back, not retried forever
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_a_401_with_an_older_token_still_refreshes(alice_session, fake_atlassian):
    grant, session = alice_session
    set_stored_tokens(grant.pk, access_token="died-early")
    Grant.objects.filter(pk=grant.pk).update(
        last_refreshed_at=timezone.now() - timedelta(minutes=5)
    )
    assert session.get(session.jira_url("rest/api/3/myself")).status_code == 200
    assert fake_atlassian.counts["refresh"] == 1


def test_a_dead_answer_does_not_kill_a_grant_reconnected_meanwhile(fake_atlassian, monkeypatch):
    """The user reconnects while a worker's refresh is in flight with the old token."""
    grant = connected_grant(fake_atlassian)
    expire(grant)
    real_refresh = client.refresh_tokens

    def reconnect_then_refuse(app, refresh_token):
        fresh = fake_atlassian.mint_grant(app.client_id, grant.account_id, "read:me offline_access")
        reconnected = Grant.objects.get(pk=grant.pk)
        reconnected.access_token = fresh["access_token"]
        reconnected.refresh_token = fresh["refresh_token"]
        reconnected.access_token_expires_at = timezone.now() + timedelta(hours=1)
        reconnected.version += 1
        reconnected.save()
        raise client.InvalidGrant("Atlassian's token endpoint answered 403 invalid_grant")

    monkeypatch.setattr(client, "refresh_tokens", reconnect_then_refuse)
    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    monkeypatch.setattr(client, "refresh_tokens", real_refresh)
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.ACTIVE
    assert token.access_token == stored.access_token
    assert not Event.objects.filter(kind=Event.Kind.NEEDS_RECONNECT).exists()


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), ("inf", None), ("nan", None), ("1e300", client.MAX_RETRY_AFTER)],
)
def test_retry_after_is_bounded(header, expected):
    response = requests.Response()
    response.headers["Retry-After"] = header
    assert client._retry_after(response) == expected


def test_a_token_answer_that_is_a_json_list_is_transient(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=200, body='["not", "an", "object"]')
    with pytest.raises(exceptions.TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    assert Grant.objects.get(pk=grant.pk).refresh_failures == 1


def test_a_huge_expires_in_is_capped(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(
        kind="refresh",
        status=200,
        body={"access_token": "a" * 40, "refresh_token": "r" * 40, "expires_in": 10**30},
    )
    refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.access_token_expires_at < timezone.now() + timedelta(seconds=86401)


def test_invalid_grant_on_the_code_exchange_means_start_again(alice_client, accepting):
    client, fake_atlassian = alice_client, accepting
    params = callback_params(consent(start(client)))
    fake_atlassian.inject(
        kind="code_exchange", status=400, body={"error": "invalid_grant", "error_description": "x"}
    )
    response = finish(client, params)
    assert any("already used" in m for m in messages_of(response))
    assert Event.objects.get(kind=Event.Kind.CONNECT_FAILED).details["reason"] == "invalid_code"


def test_an_overlong_next_is_dropped_not_a_500(alice_client, accepting):
    client = alice_client
    response = client.post("/atlassian/connect/", {"next": "/" + "x" * 2040}, HTTP_HOST="localhost")
    assert response.status_code == 302
    response = finish(client, callback_params(consent(response["Location"])))
    assert response["Location"] == "/"
