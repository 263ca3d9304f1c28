"""GrantQuerySet: the health rule once in SQL, and the queries built on it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from atlassian_oauth.health import grant_health
from atlassian_oauth.models import Grant, GrantHealth

pytestmark = pytest.mark.django_db

DAY = 86400


def grant_row(account: str, **fields) -> Grant:
    now = timezone.now()
    defaults = {
        "client_id": "app",
        "account_id": account,
        "access_token": "a",
        "refresh_token": "r",
        "access_token_expires_at": now + timedelta(hours=1),
        "consented_at": now,
        "refresh_token_issued_at": now,
    }
    return Grant.objects.create(**{**defaults, **fields})


@pytest.fixture
def one_of_each():
    return {
        GrantHealth.HEALTHY: grant_row("healthy"),
        GrantHealth.NEEDS_RECONNECT: grant_row(
            "dead", status=Grant.Status.NEEDS_RECONNECT, refresh_failures=3
        ),
        GrantHealth.NO_REFRESH_TOKEN: grant_row(
            "offline", status=Grant.Status.NO_REFRESH_TOKEN, refresh_token=None
        ),
        GrantHealth.REFRESH_FAILING: grant_row(
            "failing", refresh_failures=2, consented_at=timezone.now() - timedelta(days=360)
        ),
        GrantHealth.RECONNECT_SOON: grant_row(
            "old", consented_at=timezone.now() - timedelta(days=340)
        ),
        GrantHealth.CONFIGURATION_ERROR: grant_row(
            "refused", refresh_failures=1, last_failure=Grant.Failure.CONFIGURATION
        ),
        GrantHealth.EXPIRING_SOON: grant_row(
            "late", access_token_expires_at=timezone.now() + timedelta(seconds=100)
        ),
    }


def health_states() -> dict[str, str]:
    """Account id -> health_state (django-stubs cannot see an annotation made in a method)."""
    return dict(Grant.objects.with_health().values_list("account_id", "health_state"))  # type: ignore[misc]


def test_each_grant_gets_the_health_of_its_state(one_of_each):
    states = health_states()
    assert {states[g.account_id] for g in one_of_each.values()} == set(GrantHealth)
    for expected, grant in one_of_each.items():
        assert states[grant.account_id] == expected, grant.account_id


def test_what_people_are_told_follows_the_same_rule(one_of_each):
    labels = {state: str(grant_health(grant).label) for state, grant in one_of_each.items()}
    assert labels == {state: str(state.label) for state in GrantHealth}
    annotated = {g.account_id: g for g in Grant.objects.with_health()}
    for grant in one_of_each.values():  # the annotation gives the same answer without a query
        assert grant_health(annotated[grant.account_id]) == grant_health(grant)


def test_the_reconnect_notice_follows_the_setting(oauth_settings):
    grant_row("old", consented_at=timezone.now() - timedelta(days=300))
    oauth_settings(REAUTH_NOTICE=30 * DAY)
    assert health_states() == {"old": GrantHealth.HEALTHY}
    oauth_settings(REAUTH_NOTICE=70 * DAY)
    assert health_states() == {"old": GrantHealth.RECONNECT_SOON}


def test_needs_attention_is_every_health_but_healthy(one_of_each):
    attention = set(Grant.objects.needs_attention().values_list("account_id", flat=True))
    assert attention == {"dead", "offline", "failing", "old", "refused", "late"}


def test_health_costs_no_query_per_grant(one_of_each, django_assert_num_queries):
    with django_assert_num_queries(1):
        healths = [grant_health(g).level for g in Grant.objects.with_health()]
    assert sorted(healths) == ["error", "error", "ok", "warning", "warning", "warning", "warning"]


def test_idle_grants_need_a_keep_alive():
    grant_row("fresh")
    grant_row(
        "idle",
        refresh_token_issued_at=timezone.now() - timedelta(days=31),
        last_refreshed_at=timezone.now() - timedelta(days=31),
    )
    assert list(Grant.objects.idle().values_list("account_id", flat=True)) == ["idle"]


def test_delete_unused_wipes_and_deletes_only_grants_without_connections(fake_atlassian):
    from tests.refresh_helpers import connected_grant

    used = connected_grant(fake_atlassian)
    unused = grant_row("unused")
    assert Grant.objects.filter(pk__in=[used.pk, unused.pk]).delete_unused() == 1
    assert list(Grant.objects.values_list("pk", flat=True)) == [used.pk]
    assert Grant.objects.filter(pk=used.pk).delete_unused() == 0


def test_since_is_when_the_grant_entered_its_state(fake_atlassian):
    from atlassian_oauth import refresh
    from atlassian_oauth.exceptions import TemporarilyUnavailable
    from atlassian_oauth.health import health_since
    from atlassian_oauth.models import Event
    from tests.refresh_helpers import connected_grant, expire

    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject("refresh", status=503, times=2)
    with pytest.raises(TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    first = Grant.objects.get(pk=grant.pk)
    assert first.last_failure == Grant.Failure.TRANSIENT and first.state_changed_at is not None
    assert health_since(first) == first.state_changed_at
    Grant.objects.filter(pk=grant.pk).update(next_refresh_at=None)
    with pytest.raises(TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    second = Grant.objects.get(pk=grant.pk)
    assert second.refresh_failures == 2
    assert second.state_changed_at == first.state_changed_at  # still the same run of failures
    Grant.objects.filter(pk=grant.pk).update(next_refresh_at=None)
    refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    recovered = Grant.objects.get(pk=grant.pk)
    assert recovered.last_failure == Grant.Failure.NONE
    assert first.state_changed_at is not None and recovered.state_changed_at is not None
    assert recovered.state_changed_at > first.state_changed_at  # healthy since the recovery


def test_a_refused_client_secret_is_a_configuration_error_for_admins(fake_atlassian):
    from atlassian_oauth import refresh
    from atlassian_oauth.exceptions import TemporarilyUnavailable
    from atlassian_oauth.health import admin_advice, grant_health
    from atlassian_oauth.models import Event
    from tests.refresh_helpers import connected_grant, expire

    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject("refresh", status=401, body={"error": "access_denied"})
    with pytest.raises(TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    stored = Grant.objects.get(pk=grant.pk)
    assert health_states()[stored.account_id] == GrantHealth.CONFIGURATION_ERROR
    assert grant_health(stored).level == "error"
    assert "nothing you need to do" in str(grant_health(stored).advice)  # not the user's fault
    assert "fix it under Atlassian apps" in admin_advice(stored)


def test_a_dead_grant_is_dead_since_atlassian_refused_it(fake_atlassian):
    from atlassian_oauth import refresh
    from atlassian_oauth.exceptions import ReconnectRequired
    from atlassian_oauth.models import Event
    from tests.refresh_helpers import connected_grant, expire

    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(state_changed_at=timezone.now() - timedelta(days=9))
    expire(grant)
    fake_atlassian.revoke_grant(grant.client_id, grant.account_id)
    before = timezone.now()
    with pytest.raises(ReconnectRequired):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    dead = Grant.objects.get(pk=grant.pk)
    assert dead.state_changed_at is not None and dead.state_changed_at >= before
