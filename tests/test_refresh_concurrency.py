"""Single-flight refresh across processes: 3 processes x 16 threads, one expired grant.

Against the fake Atlassian over real HTTP and on whatever database the suite runs on (CI runs
it on SQLite, then on PostgreSQL): every round exactly one refresh reaches Atlassian, and all
48 callers get the one new token, which is the one stored.
"""

from __future__ import annotations

import time

import pytest

from atlassian_oauth.models import Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID
from tests.refresh_helpers import connected_grant, expire
from tests.refresh_worker import THREADS, token_hash, worker_env, workers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PROCESSES = 3
ROUNDS = 20
#: How far ahead of "now" the shared start moment is set, so every thread is waiting for it.
LEAD = 0.5


def test_one_refresh_per_round_and_every_caller_gets_the_new_token(fake_atlassian, tmp_path):
    grant = connected_grant(fake_atlassian, username="alice", domain="localhost")
    env = worker_env(fake_atlassian.url)
    timings = []
    with workers(PROCESSES, env, tmp_path) as processes:
        previous = token_hash(Grant.objects.get(pk=grant.pk).access_token or "")
        for round_ in range(1, ROUNDS + 1):
            expire(grant)
            before = fake_atlassian.counts.get("refresh", 0)
            moment = time.time() + LEAD
            for worker in processes:
                worker.send(f"go {moment!r} alice localhost")
            replies = [worker.read(timeout=60) for worker in processes]
            elapsed = time.time() - moment

            where = f"round {round_}/{ROUNDS}"
            refreshes = fake_atlassian.counts.get("refresh", 0) - before
            hashes = [h for reply in replies for h in reply["results"]]
            stored = Grant.objects.get(pk=grant.pk)
            current = token_hash(stored.access_token or "")
            outcomes = {h if h.startswith("error:") else h[:12] for h in hashes}
            assert refreshes == 1, f"{where}: {refreshes} refresh requests reached Atlassian"
            assert len(hashes) == PROCESSES * THREADS, f"{where}: {len(hashes)} answers"
            assert set(hashes) == {current}, (
                f"{where}: callers got {sorted(outcomes)}, the stored token is {current[:12]}"
            )
            assert current != previous, f"{where}: the stored token did not change"
            assert stored.status == Grant.Status.ACTIVE, f"{where}: grant is {stored.status}"
            info = fake_atlassian.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
            assert info is not None and not info["revoked"], f"{where}: Atlassian revoked it"
            previous = current
            timings.append((elapsed, max(s for reply in replies for s in reply["seconds"])))

    assert fake_atlassian.grant_info(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)["refresh_count"] == ROUNDS
    slowest = max(timings, key=lambda t: t[1])
    print(
        f"\n{ROUNDS} rounds x {PROCESSES * THREADS} callers: slowest call {slowest[1]:.3f} s, "
        f"mean round {sum(t[0] for t in timings) / len(timings):.3f} s after the start moment"
    )
