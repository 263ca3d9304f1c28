"""A worker killed between Atlassian's rotation and the commit: the next sweep recovers.

The killed worker leaves the old refresh token in the row and its lease; nobody calls Atlassian
while the lease lives, and once it has run out the next attempt presents the old token, which
Atlassian accepts inside its 10-minute reuse leeway. No user has to reconnect.
"""

from __future__ import annotations

import time

import pytest
import requests
from django.utils import timezone

from atlassian_oauth import exceptions, refresh
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID
from tests.helpers import alive, descendants, wait_until
from tests.refresh_helpers import connected_grant, expire
from tests.refresh_worker import LOCK_TIMEOUT_ENV, worker_env, workers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: Short enough to keep the test quick, long enough that the probe below runs inside it.
LOCK_TIMEOUT = 4


def test_a_worker_killed_after_the_rotation_is_recovered_by_the_next_sweep(
    fake_atlassian, oauth_settings, tmp_path
):
    oauth_settings(REFRESH_LOCK_TIMEOUT=LOCK_TIMEOUT)
    grant = connected_grant(fake_atlassian)
    expire(grant)
    old = Grant.objects.get(pk=grant.pk)
    # Atlassian rotates the token, then withholds the answer long after the worker is dead.
    fake_atlassian.inject(kind="refresh", delay_after=30)
    env = worker_env(fake_atlassian.url, **{LOCK_TIMEOUT_ENV: str(LOCK_TIMEOUT)})

    def lease() -> Grant:
        return Grant.objects.get(pk=grant.pk)

    with workers(1, env, tmp_path) as (worker,):
        worker.send(f"refresh {grant.pk}")
        rotated = wait_until(
            lambda: (
                fake_atlassian.counts.get("refresh", 0) == 1
                and lease().refresh_lock_until is not None
            ),
            timeout=30,
            interval=0.02,
        )
        assert rotated, f"the worker's refresh never reached the fake; log:\n{worker.tail()}"
        group = {worker.pid, *descendants(worker.pid)}
        worker.kill()
        assert not any(alive(pid) for pid in group), "a worker process survived SIGKILL"

    held = lease()
    assert held.refresh_token == old.refresh_token, "the rotated refresh token was stored"
    assert held.access_token == old.access_token and held.version == old.version
    assert held.refresh_lock_token and held.refresh_lock_until is not None, "the lease is gone"

    # While the dead worker's lease lives, nobody else calls Atlassian: they wait, then give up.
    left = (held.refresh_lock_until - timezone.now()).total_seconds()
    assert left <= LOCK_TIMEOUT, f"the worker's lease lasts {left:.0f} s: not its LOCK_TIMEOUT"
    assert left > 1.5, f"too slow to probe inside the lease ({left:.2f} s left); raise LOCK_TIMEOUT"
    with pytest.raises(exceptions.TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION, wait=0.5)
    assert fake_atlassian.counts["refresh"] == 1, "a second refresh ran inside the lease"

    # The next sweep, once the lease has run out (well inside Atlassian's 10-minute leeway).
    time.sleep(max(0.0, (held.refresh_lock_until - timezone.now()).total_seconds()) + 0.1)
    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)

    assert fake_atlassian.counts["refresh"] == 2
    last = [entry for entry in fake_atlassian.requests_log if entry["kind"] == "refresh"][-1]
    assert last["status"] == 200, "Atlassian refused the old refresh token"
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.ACTIVE
    assert token.access_token == stored.access_token != old.access_token
    assert stored.refresh_token != old.refresh_token
    assert stored.version == old.version + 1
    assert stored.refresh_lock_token == "" and stored.refresh_lock_until is None
    info = fake_atlassian.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert info is not None and not info["revoked"]
    # The recovering refresh was a routine one: no row for it, and none for a dead grant.
    assert not Event.objects.filter(kind=Event.Kind.REFRESHED).exists()
    assert not Event.objects.filter(kind=Event.Kind.NEEDS_RECONNECT).exists()

    with requests.Session() as http:
        http.trust_env = False
        me = http.get(
            f"{fake_atlassian.url}/me",
            headers={"Authorization": f"Bearer {stored.access_token}"},
            timeout=10,
        )
    assert me.status_code == 200
    assert me.json()["account_id"] == ADA_ACCOUNT_ID
