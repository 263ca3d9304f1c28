"""A real Celery worker and beat, on Redis and PostgreSQL, refresh grants before they expire.

The fake Atlassian runs in this process; the worker and beat run as subprocesses with
``tests.celery_settings`` (a sweep every second, ``REFRESH_MARGIN`` 15 s). The stored tokens
live 20 s, so they become due 5 s after they are stored; the fake then issues hour-long tokens,
so a refreshed grant is not due again during the test and the fake's count stays exact.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from atlassian_oauth.models import Event, Grant
from atlassian_oauth.testing import ACME_CLOUD_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.celery_settings import REFRESH_MARGIN
from tests.helpers import PYTHON, database_url, running, subprocess_env, wait_until
from tests.refresh_helpers import connected_grant

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

GRANTS = 5
STORED_LIFETIME = 20


def logs(folder: Path) -> str:
    return "".join(
        f"--- {name}\n{(folder / name).read_text()}"
        for name in ("worker.log", "beat.log")
        if (folder / name).exists()
    )


def test_beat_and_worker_refresh_every_grant_once_before_it_expires(
    fake_atlassian, redis_url, tmp_path
):
    import redis

    queue = f"atlassian-oauth-test-{uuid.uuid4().hex}"
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.celery_settings",
        DEMO_VAR_DIR=str(tmp_path),
        DATABASE_URL=database_url(),
        REDIS_URL=redis_url,
        TEST_CELERY_QUEUE=queue,
        ATLASSIAN_AUTH_BASE_URL=fake_atlassian.url,
        ATLASSIAN_API_BASE_URL=fake_atlassian.url,
        ATLASSIAN_CLIENT_ID=DEFAULT_CLIENT_ID,
        ATLASSIAN_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
    )
    accounts = [f"5b10refresh{index:013d}" for index in range(GRANTS)]
    for index, account_id in enumerate(accounts):
        fake_atlassian.add_account(
            account_id,
            f"user{index}@example.com",
            f"User {index}",
            resources=[{"id": ACME_CLOUD_ID, "name": "acme", "url": "https://acme.atlassian.net"}],
        )
    celery = [PYTHON, "-m", "celery", "-A", "demo_site"]
    worker_argv = [
        *celery,
        "worker",
        "--concurrency=2",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname={queue}@%h",
    ]
    beat_argv = [*celery, "beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule")]
    try:
        with (
            running(worker_argv, env, tmp_path / "worker.log"),
            running(beat_argv, env, tmp_path / "beat.log"),
        ):
            ready = wait_until(lambda: " ready." in logs(tmp_path), timeout=60)
            assert ready, f"the worker did not start; logs:\n{logs(tmp_path)}"

            fake_atlassian.access_token_lifetime = STORED_LIFETIME
            grants = [
                connected_grant(fake_atlassian, username=f"user{index}", account_id=account_id)
                for index, account_id in enumerate(accounts)
            ]
            # What Atlassian issues from now on: refreshed tokens are not due again soon.
            fake_atlassian.access_token_lifetime = 3600
            expiry: dict[int, datetime] = {g.pk: g.access_token_expires_at for g in grants}
            assert not Grant.objects.filter(version__gt=0).exists()

            def all_refreshed() -> bool:
                return Grant.objects.filter(pk__in=expiry, version__gt=0).count() == GRANTS

            done = wait_until(all_refreshed, timeout=STORED_LIFETIME + 20, interval=0.25)
            assert done, f"not every grant was refreshed; logs:\n{logs(tmp_path)}"
            # Some more sweeps, each of which may enqueue a grant again: all no-ops now.
            wait_until(lambda: False, timeout=3)
    finally:
        # The queue and kombu's bindings for it; every key of this test's own queue name.
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)

    for grant in Grant.objects.filter(pk__in=expiry):
        assert grant.version == 1
        assert grant.last_refreshed_at is not None
        assert grant.last_refreshed_at < expiry[grant.pk], "refreshed only after it expired"
        assert grant.access_token_expires_at - timezone.now() > timedelta(minutes=50)
    assert fake_atlassian.counts["refresh"] == GRANTS
    # Routine refreshes leave no event row (issue 12): the grants' own columns say when.
    assert not Event.objects.filter(kind=Event.Kind.REFRESHED).exists()
    assert REFRESH_MARGIN < STORED_LIFETIME  # so the stored tokens become due during the test
