"""The worker setup docs/celery.md recommends, run for real; and several workers and two beats on
one database refresh each grant exactly once (docs/scaling.md).

Real Celery workers (and beats) as subprocesses, on Redis and this test's PostgreSQL database;
the fake Atlassian in this process. The grants hold tokens the fake issued; the fake counts
each grant's refreshes, so a duplicate (or a rotated token presented again) shows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from atlassian_oauth.beat import SWEEP_TASK
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.helpers import PYTHON, database_url, running, subprocess_env, wait_until
from tests.refresh_helpers import SCOPES
from tests.worker_setup import documented_block

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

CELERY = [PYTHON, "-m", "celery", "-A", "demo_site"]
WORKER_FLAGS = ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]


def make_grants(fake: Any, count: int, *, prefix: str, expires_in: float) -> list[int]:
    """``count`` grants holding tokens the fake issued, the stored access tokens expiring in
    ``expires_in`` seconds (negative: expired); their ids."""
    now = timezone.now()
    grants = []
    for index in range(count):
        account_id = f"5b10{prefix}{index:016d}"
        fake.add_account(account_id, f"{prefix}{index}@example.com", f"{prefix} {index}")
        tokens = fake.mint_grant(DEFAULT_CLIENT_ID, account_id, SCOPES)
        grants.append(
            Grant(
                client_id=DEFAULT_CLIENT_ID,
                account_id=account_id,
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                access_token_expires_at=now + timedelta(seconds=expires_in),
                scopes=tokens["scope"],
                consented_at=now,
                refresh_token_issued_at=now,
            )
        )
    return [grant.pk for grant in Grant.objects.bulk_create(grants)]


def text_of(folder: Path, pattern: str = "*.log", tail: int | None = 15000) -> str:
    """The logs (their last ``tail`` characters each; None: all), each under its name."""
    return "".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-tail if tail else 0 :]}"
        for log in sorted(folder.glob(pattern))
    )


def environment(
    fake: Any, redis_url: str, folder: Path, queue: str, settings: str
) -> dict[str, str]:
    return subprocess_env(
        DJANGO_SETTINGS_MODULE=settings,
        DEMO_VAR_DIR=str(folder),
        DATABASE_URL=database_url(),
        REDIS_URL=redis_url,
        TEST_CELERY_QUEUE=queue,
        ATLASSIAN_AUTH_BASE_URL=fake.url,
        ATLASSIAN_API_BASE_URL=fake.url,
        ATLASSIAN_CLIENT_ID=DEFAULT_CLIENT_ID,
        ATLASSIAN_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
    )


def forget_queue(redis_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)


def send_sweep(redis_url: str, queue: str) -> None:
    from celery import Celery

    producer = Celery("workers-test", broker=redis_url)
    try:
        producer.send_task(SWEEP_TASK, queue=queue)
    finally:
        producer.close()


def refreshes_per_grant(fake: Any, grant_ids: list[int]) -> list[int]:
    return [
        fake.grant_info(DEFAULT_CLIENT_ID, account_id)["refresh_count"]
        for account_id in Grant.objects.filter(pk__in=grant_ids).values_list(
            "account_id", flat=True
        )
    ]


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    name = f"atlassian-oauth-workers-{uuid.uuid4().hex}"
    yield name
    forget_queue(redis_url, name)


def test_the_documented_block_is_what_the_workers_run():
    block = documented_block()
    for setting in (
        'CELERY_WORKER_POOL = "threads"',
        "CELERY_DB_REUSE_MAX",
        '"CONN_MAX_AGE"',
        '"max_connections"',
    ):
        assert setting in block
    namespace: dict[str, Any] = {"DATABASES": {"default": {}}}
    exec(block, namespace)  # noqa: S102
    concurrency = namespace["CELERY_WORKER_CONCURRENCY"]
    # The broker's pool must outgrow the thread pool, or acknowledgements stall.
    assert namespace["CELERY_BROKER_TRANSPORT_OPTIONS"]["max_connections"] > concurrency
    assert namespace["DATABASES"]["default"]["CONN_MAX_AGE"] > 0


def test_the_documented_worker_setup_keeps_its_database_connections(
    fake_atlassian, redis_url, tmp_path, queue
):
    """A worker with docs/celery.md's block refreshes 120 grants in 60 tasks on 32 threads with
    at most one database connection per thread (Celery's default: two per task)."""
    grants = make_grants(fake_atlassian, 120, prefix="reuse", expires_in=-1)
    env = environment(
        fake_atlassian, redis_url, tmp_path, queue, "tests.celery_documented_settings"
    )
    log = tmp_path / "worker.log"
    # No --pool or --concurrency: the settings decide, as the page says.
    argv = [*CELERY, "worker", *WORKER_FLAGS, f"--hostname={queue}@%h"]
    with running(argv, env, log):
        ready = wait_until(lambda: " ready." in text_of(tmp_path), timeout=60)
        assert ready, text_of(tmp_path)
        opened_at_start = text_of(tmp_path).count("Database connection opened")
        send_sweep(redis_url, queue)

        def all_refreshed() -> bool:
            return Grant.objects.filter(pk__in=grants, version__gt=0).count() == len(grants)

        assert wait_until(all_refreshed, timeout=120, interval=0.25), text_of(tmp_path)
        done = re.compile(r"Task atlassian_oauth\.tasks\.refresh_grants\[[^\]]+\] succeeded")
        finished = wait_until(
            lambda: len(done.findall(log.read_text(errors="replace"))) >= 60, timeout=30
        )
        assert finished, text_of(tmp_path)
    text = log.read_text(errors="replace")
    assert "(thread)" in text.split(" ready.")[0], text[:3000]  # the banner's concurrency line
    opened = text.count("Database connection opened") - opened_at_start
    assert 1 <= opened <= 32, f"{opened} connections for 61 tasks on 32 threads\n{text[-5000:]}"
    assert "Couldn't ack" not in text and "Traceback" not in text, text[-5000:]
    assert refreshes_per_grant(fake_atlassian, grants) == [1] * len(grants)
    assert not Event.objects.exists()  # routine refreshes: no event rows


@pytest.mark.heavy
def test_three_workers_and_two_beats_refresh_each_grant_once(
    fake_atlassian, redis_url, tmp_path, queue
):
    """docs/scaling.md's proof on one machine: three worker processes (the documented setup)
    and two beats sweeping every second on one database; every grant becomes due while they
    run, and each is refreshed exactly once."""
    count, lifetime = 300, 25
    env = environment(
        fake_atlassian, redis_url, tmp_path, queue, "tests.celery_documented_settings"
    )
    with ExitStack() as stack:
        for number in range(3):
            argv = [*CELERY, "worker", *WORKER_FLAGS, f"--hostname={queue}-{number}@%h"]
            stack.enter_context(running(argv, env, tmp_path / f"worker{number}.log"))
        ready = wait_until(lambda: text_of(tmp_path).count(" ready.") == 3, timeout=90)
        assert ready, text_of(tmp_path)
        # Tokens the database sees expiring within the margin (15 s) after ~10 s, spread over
        # the next few sweeps; the fake issues hour-long ones, so nothing is due twice.
        fake_atlassian.access_token_lifetime = 3600
        grants = make_grants(fake_atlassian, count, prefix="scale", expires_in=lifetime)
        Grant.objects.filter(pk__in=grants[::2]).update(
            access_token_expires_at=timezone.now() + timedelta(seconds=lifetime + 5)
        )
        for number in range(2):
            schedule = tmp_path / f"beat{number}-schedule"
            argv = [*CELERY, "beat", "--loglevel=INFO", "-s", str(schedule)]
            stack.enter_context(running(argv, env, tmp_path / f"beat{number}.log"))

        def all_refreshed() -> bool:
            return Grant.objects.filter(pk__in=grants, version__gt=0).count() == count

        assert wait_until(all_refreshed, timeout=lifetime + 90, interval=0.5), text_of(tmp_path)
        # More sweeps from both beats, each of which may enqueue a grant again: no-ops now.
        wait_until(lambda: False, timeout=5)
    per_grant = refreshes_per_grant(fake_atlassian, grants)
    duplicates = sum(n - 1 for n in per_grant if n > 1)
    assert duplicates == 0 and per_grant == [1] * count, f"{duplicates} duplicate refreshes"
    assert fake_atlassian.counts["refresh"] == count
    assert set(Grant.objects.filter(pk__in=grants).values_list("version", "status")) == {
        (1, Grant.Status.ACTIVE)
    }
    text = text_of(tmp_path)
    assert "Traceback" not in text and "Couldn't ack" not in text, text
    sweeps = text_of(tmp_path, "beat*.log", tail=None).count("Sending due task sweep")
    assert sweeps >= 4, text_of(tmp_path, "beat*.log")
    # Both workers and beats did some of it.
    for number in range(3):
        assert "Refreshed grant" in (tmp_path / f"worker{number}.log").read_text(), number
