"""Load: the demo site under 50 concurrent users while a refresh storm renews 1,000 grants.

The fake Atlassian runs in this process. A WSGI server (gunicorn, threaded) serves the demo site
and a Celery worker (threads pool) runs on Redis, both on this test's PostgreSQL database; locust
(headless, bounded in users and time) logs 50 users in and loads their status page and their
Jira issues (``/jira/``, which calls Jira through ``get_session``) in a loop. As the load
starts the test sends the beat's sweep twice, as two beats would: each enqueues a refresh of
every one of the 1,000 grants, spread over ``STORM_SPREAD`` seconds, so every grant gets two
refresh tasks at independent random times. The load goes on until every task has run.

Half of the grants hold an access token that has already expired (so a user's page and the
worker race to refresh it), half one that is due for the sweep but still good for a request
(so the worker rotates it while the user's pages use it). Atlassian issues hour-long tokens, so
nothing is due twice during the test, and every grant must be refreshed exactly once: a second
refresh, or a rotated refresh token presented again, shows in the fake's per-grant count.

Prints one summary line: requests, failures, latency percentiles per page, grants refreshed,
duplicate refreshes, storm duration.
"""

from __future__ import annotations

import ast
import json
import re
import signal
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sites.models import Site
from django.db.models import Max, Min
from django.utils import timezone

from atlassian_oauth.api import REQUEST_MARGIN
from atlassian_oauth.beat import REFRESH_BATCH_TASK, REFRESH_TASK, SWEEP_TASK
from atlassian_oauth.conf import conf
from atlassian_oauth.models import Connection, Event, Grant, Resource
from atlassian_oauth.testing import ACME_CLOUD_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.helpers import PYTHON, database_url, free_port, running, subprocess_env, wait_until
from tests.refresh_helpers import SCOPES, connected_grant

LOCUSTFILE = Path(__file__).resolve().parent / "load" / "locustfile.py"

USERS = 50
GRANTS = 1000
#: The load lasts as long as the storm plus this, then the test stops locust (SIGTERM, which
#: lets every user finish its request), so the whole storm runs under load however slow the
#: machine; locust's own --run-time bounds it in any case.
LOAD_TAIL = 5
LOAD_MAX_SECONDS = 150
#: The sweep spreads its refreshes over this many seconds (BEAT_JITTER of the worker).
STORM_SPREAD = 10
#: Two beats by mistake: every grant gets two refresh tasks, at independent random times, so
#: some pairs overlap and only the single-flight lease keeps them from refreshing twice.
SWEEPS = 2
#: How long the storm may take, from the sweeps sent to the last refresh task done.
STORM_TIMEOUT = 120
WORKER_CONCURRENCY = 16
WEB_WORKERS, WEB_THREADS = 2, 8
HOST = "127.0.0.1"
USERNAME = "load{index:03d}"
PASSWORD = "load-test-password"
ISSUE_MARKER = "ACME-1"
PAGES = ("status page", "jira issues")
ACME = {"id": ACME_CLOUD_ID, "name": "acme", "url": "https://acme.atlassian.net"}


def logs(folder: Path, *names: str) -> str:
    return "".join(
        f"--- {name}\n{(folder / name).read_text(errors='replace')[-20000:]}"
        for name in names
        if (folder / name).exists()
    )


def make_grants(fake: Any, site: Site) -> list[int]:
    """``GRANTS`` grants holding tokens the fake issued, all due for refresh; the first
    ``USERS`` of them connected to users ``load000``... on ``site``. Their ids, in that order."""
    now = timezone.now()
    expired = now - timedelta(seconds=1)
    # Due for the sweep (within REFRESH_MARGIN) yet still good for a request (REQUEST_MARGIN).
    expiring_in = (REQUEST_MARGIN + conf.REFRESH_MARGIN) / 2
    assert REQUEST_MARGIN < expiring_in < conf.REFRESH_MARGIN
    grants = []
    for index in range(GRANTS):
        account_id = f"5b10load{index:016d}"
        fake.add_account(account_id, f"load{index}@example.com", f"Load {index}", resources=[ACME])
        tokens = fake.mint_grant(DEFAULT_CLIENT_ID, account_id, SCOPES)
        grants.append(
            Grant(
                client_id=DEFAULT_CLIENT_ID,
                account_id=account_id,
                account_name=f"Load {index}",
                account_email=f"load{index}@example.com",
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                access_token_expires_at=(
                    expired if index % 2 else now + timedelta(seconds=expiring_in)
                ),
                scopes=tokens["scope"],
                consented_at=now,
                refresh_token_issued_at=now,
            )
        )
    # bulk_create encrypts each token bound to its row's uuid, as save() does.
    created = Grant.objects.bulk_create(grants)
    Resource.objects.bulk_create(
        Resource(
            grant=grant,
            cloud_id=ACME["id"],
            name=ACME["name"],
            url=ACME["url"],
            scopes=["read:jira-user", "read:jira-work"],
        )
        for grant in created
    )
    password = make_password(PASSWORD)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=USERNAME.format(index=index), password=password)
        for index in range(USERS)
    )
    Connection.objects.bulk_create(
        Connection(user=user, site=site, grant=grant)
        for user, grant in zip(users, created, strict=False)
    )
    return [grant.pk for grant in created]


# A refresh task (one grant: 'refreshed') or the sweep's batch task (a list, one per grant).
REFRESH_TASK_DONE = re.compile(
    rf"Task (?:{re.escape(REFRESH_TASK)}|{re.escape(REFRESH_BATCH_TASK)})\[[^\]]+\] "
    r"(?:succeeded in [0-9.e-]+s: (\[[^\]]*\]|'[^']*')|raised)"
)
#: What refresh.py logs for each refresh it did, with who asked ([beat], [application]).
REFRESHED_LINE = re.compile(r"Refreshed grant \d+ \(.*?\) \[(\w+)\]: ")


def task_outcomes(worker_log: Path) -> Counter[str]:
    """How the worker's refresh tasks ended so far, by what they returned ("raised": an error).

    "refreshed" means the grant's version moved past what the task first saw, so a task that
    waited for another's refresh says "refreshed" too; the fake's count says who called it."""
    text = worker_log.read_text(errors="replace") if worker_log.exists() else ""
    outcomes: Counter[str] = Counter()
    for match in REFRESH_TASK_DONE.finditer(text):
        result = match.group(1)
        if result is None:
            outcomes["raised"] += 1
        else:
            returned = ast.literal_eval(result)
            outcomes.update(returned if isinstance(returned, list) else [returned])
    return outcomes


def read_results(path: Path, log: Path) -> dict[str, Any]:
    """What the locustfile wrote when locust quit: per request name (and ``Aggregated``) the
    count, failures and p50/p95/p99 in ms; and the errors."""
    assert path.exists(), f"locust wrote no results\n{log.read_text(errors='replace')[-20000:]}"
    results: dict[str, Any] = json.loads(path.read_text())
    return results


def send_sweeps(redis_url: str, queue: str, count: int) -> None:
    """Send the beat's sweep to the test's worker ``count`` times at once, as that many beats
    would (by name, no arguments)."""
    from celery import Celery

    producer = Celery("load-test", broker=redis_url)
    try:
        for _ in range(count):
            producer.send_task(SWEEP_TASK, queue=queue)
    finally:
        producer.close()


@pytest.mark.heavy
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_fifty_users_load_pages_while_a_refresh_storm_renews_a_thousand_grants(
    fake_atlassian, redis_url, tmp_path, capsys
):
    import redis

    site = Site.objects.create(domain=HOST, name="Load")
    started = time.monotonic()
    grant_ids = make_grants(fake_atlassian, site)
    setup_seconds = time.monotonic() - started
    assert Grant.objects.filter(version=0, status=Grant.Status.ACTIVE).count() == GRANTS

    queue = f"atlassian-oauth-load-{uuid.uuid4().hex}"
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.adversarial.load.settings",
        DJANGO_DEBUG="false",
        DEMO_VAR_DIR=str(tmp_path),
        DATABASE_URL=database_url(),
        REDIS_URL=redis_url,
        LOAD_CELERY_QUEUE=queue,
        LOAD_STORM_SPREAD=str(STORM_SPREAD),
        ATLASSIAN_AUTH_BASE_URL=fake_atlassian.url,
        ATLASSIAN_API_BASE_URL=fake_atlassian.url,
        ATLASSIAN_CLIENT_ID=DEFAULT_CLIENT_ID,
        ATLASSIAN_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
    )
    web_argv = [
        PYTHON,
        "-m",
        "gunicorn",
        "demo_site.wsgi:application",
        f"--bind={HOST}:{port}",
        f"--workers={WEB_WORKERS}",
        "--worker-class=gthread",
        f"--threads={WEB_THREADS}",
        # A request stuck this long (a deadlock) gets its worker killed: the client sees errors.
        "--timeout=60",
        "--graceful-timeout=5",
        # Not gunicorn's control socket: it sits in $HOME, shared by every run on the machine.
        "--no-control-socket",
        "--error-logfile=-",
    ]
    worker_argv = [
        *(PYTHON, "-m", "celery", "-A", "demo_site", "worker"),
        "--pool=threads",
        f"--concurrency={WORKER_CONCURRENCY}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname={queue}@%h",
    ]
    results_path = tmp_path / "locust-results.json"
    locust_argv = [
        *(PYTHON, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        f"--host={base}",
        f"--users={USERS}",
        f"--spawn-rate={USERS}",
        f"--run-time={LOAD_MAX_SECONDS}s",
        "--stop-timeout=10",
        "--only-summary",
        "--loglevel=WARNING",
    ]
    locust_env = subprocess_env(
        LOAD_USERS=str(USERS),
        LOAD_USERNAME=USERNAME,
        LOAD_PASSWORD=PASSWORD,
        LOAD_ISSUE_MARKER=ISSUE_MARKER,
        LOAD_RESULTS=str(results_path),
    )
    server_logs = ("web.log", "worker.log")
    try:
        with (
            running(web_argv, env, tmp_path / "web.log"),
            running(worker_argv, env, tmp_path / "worker.log"),
        ):

            def web_ready() -> bool:
                try:
                    return requests.get(f"{base}/accounts/login/", timeout=5).status_code == 200
                except requests.ConnectionError:
                    return False

            assert wait_until(web_ready, timeout=60, interval=0.25), logs(tmp_path, "web.log")
            assert wait_until(lambda: " ready." in logs(tmp_path, "worker.log"), timeout=60), logs(
                tmp_path, *server_logs
            )
            load_started = time.monotonic()
            with running(locust_argv, locust_env, tmp_path / "locust.log") as locust:
                storm_started = timezone.now()
                send_sweeps(redis_url, queue, SWEEPS)

                def storm_over() -> bool:
                    # Every task ran (the late ones of each pair too), and every grant moved on.
                    done = sum(task_outcomes(tmp_path / "worker.log").values())
                    return done >= SWEEPS * GRANTS and (
                        Grant.objects.filter(pk__in=grant_ids, version__gt=0).count() == GRANTS
                    )

                stormed = wait_until(storm_over, timeout=STORM_TIMEOUT, interval=0.5)
                storm_ended = timezone.now()
                refreshed_in_time = Grant.objects.filter(version__gt=0).count()
                under_load = locust.poll() is None
                if under_load:
                    time.sleep(LOAD_TAIL)
                    locust.send_signal(signal.SIGTERM)
                locust_code = locust.wait(timeout=60)
                load_seconds = time.monotonic() - load_started
            outcomes = task_outcomes(tmp_path / "worker.log")
            assert stormed, (
                f"{refreshed_in_time} of {GRANTS} grants refreshed, tasks {dict(outcomes)}, "
                f"in {STORM_TIMEOUT} s\n" + logs(tmp_path, *server_logs)
            )
    finally:
        # The queue and kombu's bindings for it: every key of this test's own queue name.
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)

    results = read_results(results_path, tmp_path / "locust.log")
    stats = results["requests"]
    grants = Grant.objects.filter(pk__in=grant_ids)
    window = grants.aggregate(first=Min("last_refreshed_at"), last=Max("last_refreshed_at"))
    storm_seconds = (storm_ended - storm_started).total_seconds()
    per_grant = [
        fake_atlassian.grant_info(DEFAULT_CLIENT_ID, account_id)["refresh_count"]
        for account_id in grants.values_list("account_id", flat=True)
    ]
    duplicates = sum(count - 1 for count in per_grant if count > 1)
    refreshed_at_fake = sum(1 for count in per_grant if count >= 1)
    # Routine refreshes leave no event row (issue 12): who refreshed is in the servers' logs.
    by_actor = dict.fromkeys(Event.Actor, 0)
    for name in server_logs:
        text = (tmp_path / name).read_text(errors="replace")
        for match in REFRESHED_LINE.finditer(text):
            by_actor[Event.Actor(match.group(1))] += 1
    total = stats["Aggregated"]
    latency = "; ".join(
        f"{name} n={stats[name]['count']} p50/p95/p99 "
        f"{stats[name]['p50']}/{stats[name]['p95']}/{stats[name]['p99']} ms"
        for name in PAGES
        if name in stats
    )
    summary = (
        f"LOAD: requests {total['count']}, failures {total['failures']}; {latency}; "
        f"grants refreshed {refreshed_at_fake}/{GRANTS} "
        f"(worker {by_actor[Event.Actor.BEAT]}, pages {by_actor[Event.Actor.APPLICATION]}), "
        f"duplicate refreshes {duplicates}, storm duration {storm_seconds:.1f} s "
        f"(refresh tasks {dict(outcomes)}) "
        f"(setup {setup_seconds:.1f} s, {USERS} users, {load_seconds:.1f} s of load)"
    )
    with capsys.disabled():
        print(f"\n{summary}")

    assert under_load, f"locust ended before the storm did: {summary}\n" + logs(
        tmp_path, "locust.log"
    )
    assert results["errors"] == [], f"{summary}\n" + json.dumps(results["errors"], indent=2)
    assert total["failures"] == 0, summary
    for name in PAGES:
        assert stats[name]["count"] > 0, f"locust never loaded {name!r}: {summary}"
    assert stats["log in"]["count"] == USERS, summary
    assert results["exit_code"] == locust_code == 0, logs(tmp_path, "locust.log")

    # Exactly one refresh per grant at Atlassian: no grant twice, no rotated token reused
    # (each would add to the fake's count), and no refresh request that failed.
    assert duplicates == 0, summary
    assert per_grant == [1] * GRANTS, summary
    assert fake_atlassian.counts["refresh"] == GRANTS, summary
    assert set(outcomes) <= {"refreshed", "still fresh"}, summary
    assert sum(outcomes.values()) == SWEEPS * GRANTS, summary
    assert set(grants.values_list("status", "version", "refresh_failures")) == {
        (Grant.Status.ACTIVE, 1, 0)
    }
    assert window["first"] >= storm_started, "a grant was refreshed before the storm"
    assert sum(by_actor.values()) == GRANTS, summary
    assert not Event.objects.exists(), list(Event.objects.values_list("kind", "message")[:10])
    # Every grant is one Atlassian still accepts, its stored token good for the next hour.
    assert not grants.filter(access_token_expires_at__lt=timezone.now() + timedelta(minutes=50))
    for account_id in grants.values_list("account_id", flat=True):
        assert fake_atlassian.grant_info(DEFAULT_CLIENT_ID, account_id)["live_families"]
    # Nothing went wrong quietly in the server processes either.
    for name in server_logs:
        text = (tmp_path / name).read_text(errors="replace")
        assert "Traceback" not in text and " ERROR " not in text, logs(tmp_path, name)
        assert "finished after its lease" not in text, logs(tmp_path, name)


# ---- the demo's Jira page itself, in process (runs in every pass) ----------------------------


@pytest.mark.django_db
def test_the_jira_page_lists_the_users_issues_through_get_session(fake_atlassian, client):
    connected_grant(fake_atlassian, username="alice", domain="testserver", expires_in=-1)
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/jira/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "ACME-1" in page and "Refresh tokens rotate on every use" in page
    # The stored token had expired: get_session refreshed it first, then called Jira.
    assert fake_atlassian.counts["refresh"] == 1
    assert fake_atlassian.counts["jira"] == 1


@pytest.mark.django_db
def test_the_jira_page_asks_an_unconnected_user_to_connect(client):
    Site.objects.get_or_create(domain="testserver", defaults={"name": "testserver"})
    client.force_login(get_user_model().objects.create(username="nobody"))
    response = client.get("/jira/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Connect Jira to see your issues here." in page
    assert "/atlassian/connect/" in page


@pytest.mark.django_db
def test_the_jira_page_asks_to_reconnect_when_atlassian_refuses_the_grant(fake_atlassian, client):
    grant = connected_grant(fake_atlassian, username="alice", domain="testserver", expires_in=-1)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, grant.account_id)
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/jira/")
    assert response.status_code == 200
    assert "connect Jira again" in response.content.decode()
    assert fake_atlassian.counts["jira"] == 0


@pytest.mark.django_db
def test_the_jira_page_is_a_503_while_atlassian_is_down(fake_atlassian, client):
    connected_grant(fake_atlassian, username="alice", domain="testserver", expires_in=-1)
    fake_atlassian.inject("refresh", status=503, headers={"Retry-After": "30"})
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/jira/")
    assert response.status_code == 503
    assert "try again in a moment" in response.content.decode()
    assert fake_atlassian.counts["jira"] == 0
