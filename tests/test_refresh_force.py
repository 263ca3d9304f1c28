"""``refresh.ensure_fresh(force=True)``: past "is it due" and a backoff, never past the lease."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db.models import F
from django.utils import timezone

from atlassian_oauth import exceptions, refresh
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db

COMMAND = Event.Actor.COMMAND


def test_force_refreshes_a_fresh_token_once(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    token = refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True)
    assert token.renewed and token.version == grant.version + 1
    assert fake_atlassian.counts["refresh"] == 1
    # Without force, the token it just stored is fresh: nothing more happens.
    assert not refresh.ensure_fresh(grant.pk, actor=COMMAND).renewed
    assert fake_atlassian.counts["refresh"] == 1


def test_force_refreshes_a_token_renewed_a_moment_ago(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    first = refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True)
    # A 401 caller would be refused here (renewed seconds ago); an operator's force is not.
    assert not refresh.ensure_fresh(grant.pk, actor=COMMAND, stale_version=first.version).renewed
    second = refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True)
    assert second.renewed and second.version == first.version + 1
    assert fake_atlassian.counts["refresh"] == 2


def test_force_goes_past_a_backoff(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=-1)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_failures=3, next_refresh_at=timezone.now() + timedelta(hours=1)
    )
    with pytest.raises(exceptions.TemporarilyUnavailable, match="backing off"):
        refresh.ensure_fresh(grant.pk, actor=COMMAND)
    assert fake_atlassian.counts.get("refresh", 0) == 0

    assert refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True).renewed
    stored = Grant.objects.get(pk=grant.pk)
    assert (stored.refresh_failures, stored.next_refresh_at) == (0, None)


def test_force_does_not_revive_a_dead_grant(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    with pytest.raises(exceptions.ReconnectRequired):
        refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True)
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db(transaction=True)  # the other worker's thread has its own connection
def test_force_waits_for_the_lease_and_takes_the_other_workers_refresh(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_lock_token="another-worker",
        refresh_lock_until=timezone.now() + timedelta(minutes=1),
    )

    def other_worker_finishes() -> None:
        time.sleep(0.3)
        try:
            Grant.objects.filter(pk=grant.pk).update(
                version=F("version") + 1, refresh_lock_token="", refresh_lock_until=None
            )
        finally:
            db_connection.close()

    finisher = threading.Thread(target=other_worker_finishes)
    finisher.start()
    try:
        token = refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True, wait=5)
    finally:
        finisher.join()
    # Never a second refresh of the grant: the one that landed while we waited is the answer.
    assert not token.renewed and token.version == grant.version + 1
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_force_gives_up_on_a_lease_held_too_long(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_lock_token="another-worker",
        refresh_lock_until=timezone.now() + timedelta(minutes=1),
    )
    with pytest.raises(exceptions.TemporarilyUnavailable, match="taking too long"):
        refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True, wait=0.2)
    assert Grant.objects.get(pk=grant.pk).refresh_lock_token == "another-worker"
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_a_forced_refresh_atlassian_refuses_marks_the_grant_dead(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    with pytest.raises(exceptions.ReconnectRequired):
        refresh.ensure_fresh(grant.pk, actor=COMMAND, force=True)
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.NEEDS_RECONNECT
