"""The one refresh path, in one process, against the fake over real HTTP."""

from __future__ import annotations

import pytest

from atlassian_oauth import refresh
from atlassian_oauth.api import get_access_token, get_session
from atlassian_oauth.models import Event, Grant
from tests.refresh_helpers import connected_grant, expire

pytestmark = pytest.mark.django_db


def test_a_fresh_token_is_returned_without_calling_atlassian(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION)
    assert token.access_token == grant.access_token
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_an_expired_token_is_refreshed_and_the_rotation_stored(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    stored = Grant.objects.get(pk=grant.pk)
    assert token.access_token == stored.access_token != grant.access_token
    assert stored.refresh_token != grant.refresh_token
    assert stored.version == grant.version + 1
    assert stored.refresh_lock_token == "" and stored.refresh_lock_until is None
    assert fake_atlassian.counts["refresh"] == 1
    assert stored.last_refreshed_at is not None
    # A routine refresh: the grant's columns say when; no event row (issue 12).
    assert not Event.objects.exists()


def test_the_session_sends_the_token_and_reaches_jira(fake_atlassian, django_user_model):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    alice = django_user_model.objects.get(username="alice")
    from django.contrib.sites.models import Site

    session = get_session(alice, Site.objects.get(domain="localhost"))
    response = session.get(session.jira_url("rest/api/3/myself"))
    assert response.status_code == 200
    assert response.json()["emailAddress"] == "ada@example.com"
    assert fake_atlassian.counts["refresh"] == 1
    assert get_access_token(alice, Site.objects.get(domain="localhost")) == (
        Grant.objects.get().access_token
    )


def test_only_the_call_that_renewed_the_token_says_so(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    first = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    # A caller that saw the old version and finds the row moved on renewed nothing itself.
    second = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT, stale_version=grant.version)
    assert first.renewed and not second.renewed
    assert second.version == first.version
    assert fake_atlassian.counts["refresh"] == 1
