"""Faults through the real stack: a Celery worker and beat on Redis and PostgreSQL, against the
fake Atlassian in this process, keep every grant Atlassian still accepts alive through them.

Thirty grants hold tokens the fake really issued. Three of them Atlassian kills with
``invalid_grant``, three with ``unauthorized_client``; the other 24 must survive, while the test
makes refreshes due and injects, in turn:

A. every error kind of docs/atlassian.md's table on the token endpoint (503 and 429 with
   Retry-After, 500, 502, a 200 that is not JSON, a 200 without an access token, an answer
   slower than the HTTP timeout before and after rotating, a dropped connection; then 401
   access_denied, the wrong-client-secret answer);
B. the worker's PostgreSQL sessions terminated while the fake withholds an answer it already
   rotated for, so the kill lands between Atlassian's answer and the write;
C. the whole worker SIGKILLed before Atlassian acted on its call, while the fake holds an answer
   after rotating, and right after a write, restarted after each kill;
D. the Redis broker (a redis-server of this test's own, without persistence) killed and
   restarted while refresh tasks are queued.

Then the faults stop, every grant is made due once more, and the beat alone must bring every
surviving grant back: ACTIVE, holding the refresh token the fake would accept next (not one it
already rotated), and an access token with which the app's API reaches ``/me``. The grants
Atlassian killed must be *needs reconnect*, with Atlassian's error, exactly once.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth import api, client
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.refresh import MIN_FORCED_REFRESH_INTERVAL
from atlassian_oauth.testing import (
    ACME_CLOUD_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FakeAtlassian,
)
from tests.adversarial.fault_stack_helpers import (
    CeleryProcess,
    RedisServer,
    pending_faults,
    refresh_requests,
    refresh_token_state,
    refreshes_in_flight,
    terminate_backends,
)
from tests.adversarial.fault_stack_settings import (
    APPLICATION_NAME,
    HTTP_TIMEOUT,
    REFRESH_LOCK_TIMEOUT,
    REFRESH_MARGIN,
)
from tests.conftest import service_missing
from tests.helpers import PYTHON, database_url, subprocess_env, wait_until
from tests.refresh_helpers import SCOPES, connected_grant

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

ALIVE = 24
DEAD_PER_ERROR = 3
DOMAIN = "localhost"
#: Making a grant due moves its stored expiry to this many seconds ahead: inside the worker's
#: REFRESH_MARGIN, so the sweep picks it, yet ahead of the whole test, so a grant that backs off
#: still hands application code a token that works (the fake's tokens really live an hour).
DUE_IN = REFRESH_MARGIN - 100
SLOW = HTTP_TIMEOUT + 1.5

#: Phase A: (name, fault) pairs, each injected for the next two refreshes, in this order.
ERROR_KINDS: list[tuple[str, dict[str, Any]]] = [
    ("503 Retry-After", {"status": 503, "headers": {"Retry-After": "1"}}),
    ("429 Retry-After", {"status": 429, "headers": {"Retry-After": "1"}}),
    ("500", {"status": 500}),
    ("502 HTML body", {"status": 502, "body": "<html><body>Bad gateway</body></html>"}),
    ("200 not JSON", {"status": 200, "body": "<html><body>Down for maintenance</body></html>"}),
    (
        "200 without access_token",
        {"status": 200, "body": {"token_type": "Bearer", "scope": SCOPES}},
    ),
    ("slower than the timeout", {"delay": SLOW}),
    ("slower than the timeout after rotating", {"delay_after": SLOW}),
    ("dropped connection", {"drop": True}),
]
ERROR_TIMES = 2
#: The token endpoint's answer to a wrong client secret, exactly as the fake gives it.
WRONG_SECRET = {
    "status": 401,
    "body": {"error": "access_denied", "error_description": "Unauthorized"},
}
WRONG_SECRET_TIMES = 2
#: Restarts of a Celery process that died by itself after the broker restart, at most.
MAX_CRASHES = 3


class Stack:
    """The running processes, the fake, and the tally of faults injected."""

    def __init__(
        self, fake: FakeAtlassian, redis: RedisServer, worker: CeleryProcess, beat: CeleryProcess
    ) -> None:
        self.fake = fake
        self.redis = redis
        self.worker = worker
        self.beat = beat
        self.faults: Counter[str] = Counter()
        #: From the broker restart on, a Celery process that exits is started again, as a
        #: process supervisor (systemd, Kubernetes) would; before it, an exit fails the test.
        self.supervising = False
        self.crashes: list[str] = []

    def logs(self) -> str:
        return f"{self.worker.all_logs()}\n{self.beat.all_logs()}"

    def check_processes(self) -> None:
        for process, ready_marker in ((self.worker, " ready."), (self.beat, None)):
            if process.running():
                continue
            if not self.supervising:
                raise AssertionError(f"the Celery {process.name} exited\n{self.logs()}")
            fatal = [
                line
                for line in process.text().splitlines()
                if "CRITICAL" in line or "Unrecov" in line
            ]
            self.crashes.append(f"{process.name}: {fatal[-1] if fatal else 'exited'}")
            assert len(self.crashes) <= MAX_CRASHES, f"Celery keeps dying\n{self.logs()}"
            process.start(ready_marker=ready_marker)

    def wait(self, what: str, condition: Any, timeout: float, interval: float = 0.1) -> None:
        def checked() -> bool:
            self.check_processes()
            return bool(condition())

        if not wait_until(checked, timeout=timeout, interval=interval):
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")

    def inject(self, name: str, times: int = 1, **fault: Any) -> None:
        self.fake.inject("refresh", times=times, **fault)
        self.faults[name] += times

    def wait_consumed(self, since: int, count: int, timeout: float) -> None:
        """Until ``count`` refreshes after ``since`` reached the fake and all were answered."""
        self.wait(
            f"{count} refreshes to take the injected faults",
            lambda: (
                refresh_requests(self.fake) >= since + count and refreshes_in_flight(self.fake) == 0
            ),
            timeout,
        )

    def wait_held(self, since: int, timeout: float = 30) -> None:
        """Until the first refresh after ``since`` (the one a fault holds) is being held."""
        self.wait(
            "a refresh held by the fake",
            lambda: refresh_requests(self.fake) > since and refreshes_in_flight(self.fake) > 0,
            timeout,
            interval=0.02,
        )


def make_due(pks: list[int]) -> None:
    """Make the grants due for the sweep (those backing off stay out until their retry).

    As if time had passed: their last refresh moves back too, since refresh.py leaves a token
    renewed within the last minute alone even when it expires within the margin.
    """
    now = timezone.now()
    Grant.objects.filter(pk__in=pks, status=Grant.Status.ACTIVE).update(
        access_token_expires_at=now + timedelta(seconds=DUE_IN),
        last_refreshed_at=now - timedelta(seconds=2 * MIN_FORCED_REFRESH_INTERVAL),
    )


def no_alive_grant_marked_dead(stack: Stack, alive: list[int], phase: str) -> None:
    marked = list(
        Grant.objects.filter(pk__in=alive)
        .exclude(status=Grant.Status.ACTIVE)
        .values_list("account_id", "status", "last_error")
    )
    assert not marked, f"after {phase}, grants Atlassian accepts were given up: {marked}"


def dead_answers(fake: FakeAtlassian) -> int:
    """Refreshes the fake refused as a dead grant (403 invalid_grant / unauthorized_client)."""
    return sum(1 for e in fake.requests_log if e["kind"] == "refresh" and e["status"] == 403)


def in_configuration_backoff(grant: Grant) -> bool:
    return grant.last_error.startswith("configuration:")


def test_every_grant_atlassian_accepts_survives_the_fault_matrix(
    fake_atlassian: FakeAtlassian, tmp_path, capsys
):
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed (the test restarts a broker of its own)")
    fake = fake_atlassian
    redis = RedisServer(tmp_path)
    redis.start()
    queue = f"atlassian-oauth-fault-stack-{uuid.uuid4().hex}"
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.adversarial.fault_stack_settings",
        DEMO_VAR_DIR=str(tmp_path),
        DATABASE_URL=database_url(),
        REDIS_URL=redis.url,
        TEST_CELERY_QUEUE=queue,
        FAULT_STACK_APPLICATION_NAME=APPLICATION_NAME,
        ATLASSIAN_AUTH_BASE_URL=fake.url,
        ATLASSIAN_API_BASE_URL=fake.url,
        ATLASSIAN_CLIENT_ID=DEFAULT_CLIENT_ID,
        ATLASSIAN_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        PYTHONUNBUFFERED="1",
    )
    celery = [PYTHON, "-m", "celery", "-A", "demo_site"]
    worker = CeleryProcess(
        "worker",
        [
            *celery,
            "worker",
            "--concurrency=2",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname={queue}@%h",
        ],
        env,
        tmp_path,
    )
    beat = CeleryProcess(
        "beat",
        [*celery, "beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule")],
        env,
        tmp_path,
    )
    stack = Stack(fake, redis, worker, beat)

    # ---- the grants: distinct Atlassian accounts, tokens the fake issued ---------------------
    accounts = [f"5b10fault{index:015d}" for index in range(ALIVE + 2 * DEAD_PER_ERROR)]
    for index, account_id in enumerate(accounts):
        fake.add_account(
            account_id,
            f"user{index}@example.com",
            f"User {index}",
            resources=[{"id": ACME_CLOUD_ID, "name": "acme", "url": "https://acme.atlassian.net"}],
        )
    grant_of = {
        account_id: connected_grant(fake, username=f"user{index}", account_id=account_id).pk
        for index, account_id in enumerate(accounts)
    }
    alive_accounts = accounts[:ALIVE]
    invalid_grant_accounts = accounts[ALIVE : ALIVE + DEAD_PER_ERROR]
    unauthorized_accounts = accounts[ALIVE + DEAD_PER_ERROR :]
    alive = [grant_of[a] for a in alive_accounts]
    invalid_grant_dead = [grant_of[a] for a in invalid_grant_accounts]
    unauthorized_dead = [grant_of[a] for a in unauthorized_accounts]

    def all_dead(pks: list[int]) -> bool:
        return Grant.objects.filter(pk__in=pks, status=Grant.Status.NEEDS_RECONNECT).count() == len(
            pks
        )

    started = time.monotonic()
    try:
        worker.start(ready_marker=" ready.")
        beat.start()

        # ---- A: every error kind; Atlassian kills three grants with invalid_grant --------------
        fake.invalid_refresh_error = "invalid_grant"
        for account_id in invalid_grant_accounts:
            assert fake.revoke_grant(DEFAULT_CLIENT_ID, account_id)
        since = refresh_requests(fake)
        for name, fault in ERROR_KINDS:
            stack.inject(name, times=ERROR_TIMES, **fault)
        make_due(alive + invalid_grant_dead)
        stack.wait_consumed(since, len(ERROR_KINDS) * ERROR_TIMES, timeout=60)
        stack.wait(
            "the invalid_grant grants to need reconnecting",
            lambda: all_dead(invalid_grant_dead),
            40,
        )
        no_alive_grant_marked_dead(stack, alive, "the error kinds")

        # The wrong client secret, only while no grant Atlassian killed is due: a grant it hits
        # backs off for an hour (an admin has to act), so it would never learn it is dead.
        since = refresh_requests(fake)
        stack.inject(
            "401 access_denied (wrong client secret)", times=WRONG_SECRET_TIMES, **WRONG_SECRET
        )
        make_due(alive)
        stack.wait_consumed(since, WRONG_SECRET_TIMES, timeout=30)

        def backing_off() -> list[int]:
            return [g.pk for g in Grant.objects.filter(pk__in=alive) if in_configuration_backoff(g)]

        # The fake has answered; the worker writes the backoff a moment later.
        stack.wait(
            "the 401s to put their grants in configuration backoff",
            lambda: len(backing_off()) >= WRONG_SECRET_TIMES,
            15,
        )
        misconfigured = backing_off()
        assert len(misconfigured) == WRONG_SECRET_TIMES, "a 401 was not taken as configuration"
        no_alive_grant_marked_dead(stack, alive, "the wrong client secret")

        # ---- B: the worker's database sessions killed between Atlassian's answer and the write --
        fake.invalid_refresh_error = "unauthorized_client"
        for account_id in unauthorized_accounts:
            assert fake.revoke_grant(DEFAULT_CLIENT_ID, account_id)
        for _ in range(2):
            since = refresh_requests(fake)
            fake.inject("refresh", delay_after=1.5)
            make_due(alive + unauthorized_dead)
            stack.wait_held(since)
            time.sleep(0.3)  # well inside the hold: Atlassian has rotated, nothing is written
            killed = terminate_backends(APPLICATION_NAME)
            assert killed >= 1, "no worker session to terminate while its refresh was held"
            stack.faults["PostgreSQL session terminated mid-refresh"] += 1
            stack.wait(
                "the held refresh to be answered", lambda: refreshes_in_flight(fake) == 0, 15
            )
        stack.wait(
            "the unauthorized_client grants to need reconnecting",
            lambda: all_dead(unauthorized_dead),
            REFRESH_LOCK_TIMEOUT + 40,
        )
        no_alive_grant_marked_dead(stack, alive, "the terminated database sessions")
        # From here on every grant Atlassian killed is marked: nothing may present its token again.
        refused = dead_answers(fake)

        # ---- C: the worker SIGKILLed at each step of a refresh, restarted after each kill -----
        kills: list[tuple[str, dict[str, Any]]] = [
            ("before Atlassian acted", {"delay": 8.0}),
            ("after Atlassian rotated, answer held", {"delay_after": 8.0}),
        ]
        for step, fault in kills:
            since = refresh_requests(fake)
            fake.inject("refresh", **fault)
            make_due(alive)
            stack.wait_held(since)
            worker.kill()
            stack.faults[f"worker SIGKILLed {step}"] += 1
            worker.start(ready_marker=" ready.")
        versions = dict(Grant.objects.filter(pk__in=alive).values_list("pk", "version"))

        def one_written() -> bool:
            now = dict(Grant.objects.filter(pk__in=alive).values_list("pk", "version"))
            return any(now[pk] > versions[pk] for pk in alive)

        make_due(alive)
        stack.wait("a refresh to be written", one_written, timeout=60, interval=0.005)
        worker.kill()
        stack.faults["worker SIGKILLed after the write"] += 1
        worker.start(ready_marker=" ready.")
        no_alive_grant_marked_dead(stack, alive, "the SIGKILLs")

        # ---- D: the broker restarted while refresh tasks are queued -----------------------------
        # Slow answers (within the timeout) keep the pool busy, so the sweep's tasks queue up.
        fake.inject("refresh", delay=1.0, times=4)
        make_due(alive)
        stack.wait("refresh tasks queued in Redis", lambda: redis.queued(queue) >= 3, 30, 0.05)
        queued = redis.queued(queue)
        redis.kill()
        time.sleep(1.0)
        redis.start()
        # kombu 5.7 can die of the lost connection ("Unrecoverable error: AttributeError:
        # 'NoneType' object has no attribute 'hostname'" while restoring unacknowledged
        # messages): a deployment's supervisor restarts it, and so does this test.
        stack.supervising = True
        stack.faults["Redis restarted with tasks queued"] += 1
        stack.wait("the last slow answers to be taken", lambda: pending_faults(fake) == 0, 60)
        stack.wait("the last refresh to be answered", lambda: refreshes_in_flight(fake) == 0, 15)
        no_alive_grant_marked_dead(stack, alive, "the Redis restart")

        # ---- E: no more faults; the beat alone must bring every surviving grant back ----------
        calm = timezone.now()
        make_due(alive)
        recovering = [pk for pk in alive if pk not in misconfigured]

        def all_recovered() -> bool:
            return Grant.objects.filter(
                pk__in=recovering, status=Grant.Status.ACTIVE, last_refreshed_at__gt=calm
            ).count() == len(recovering)

        stack.wait("every grant Atlassian accepts to be refreshed", all_recovered, 90, 0.25)
        # A few more sweeps, whose tasks must all find the grants fresh.
        time.sleep(3)
        stack.wait("the last refresh to be answered", lambda: refreshes_in_flight(fake) == 0, 15)
        stack.check_processes()
    finally:
        beat.stop()
        worker.stop()
        redis.kill()
    seconds = time.monotonic() - started

    # ---- the verdict ------------------------------------------------------------------------
    refreshes_before_check = refresh_requests(fake)
    user_model = get_user_model()
    site = Site.objects.get(domain=DOMAIN)
    lost: list[str] = []
    for index, account_id in enumerate(alive_accounts):
        grant = Grant.objects.get(pk=grant_of[account_id])
        problems = []
        if grant.status != Grant.Status.ACTIVE:
            problems.append(f"status {grant.status} ({grant.last_error})")
        info = fake.grant_info(DEFAULT_CLIENT_ID, account_id)
        if info is None or info["revoked"]:
            problems.append("Atlassian revoked the grant (a rotated token was reused too late)")
        token_state = refresh_token_state(fake, grant.refresh_token)
        if token_state != "current":
            problems.append(f"the stored refresh token is {token_state} at Atlassian")
        try:
            user = user_model.objects.get(username=f"user{index}")
            profile = client.me(api.get_access_token(user, site))
            if profile.account_id != account_id:
                problems.append(f"/me answered for {profile.account_id}")
        except Exception as error:  # any failure to reach /me is the finding
            problems.append(f"/me through the app failed: {type(error).__name__}: {error}")
        if problems:
            lost.append(f"{account_id}: {'; '.join(problems)}")
    assert refresh_requests(fake) == refreshes_before_check, "checking a token refreshed it"
    assert dead_answers(fake) == refused, "a grant marked needs-reconnect was refreshed again"

    dead_wrongly: list[str] = []
    for pks, code in (
        (invalid_grant_dead, "invalid_grant"),
        (unauthorized_dead, "unauthorized_client"),
    ):
        for grant in Grant.objects.filter(pk__in=pks):
            marked = Event.objects.filter(grant=grant, kind=Event.Kind.NEEDS_RECONNECT).count()
            if grant.status != Grant.Status.NEEDS_RECONNECT or code not in grant.last_error:
                dead_wrongly.append(f"{grant.account_id}: {grant.status} ({grant.last_error})")
            elif marked != 1:
                dead_wrongly.append(f"{grant.account_id}: {marked} needs-reconnect events")
    dead = len(invalid_grant_dead) + len(unauthorized_dead) - len(dead_wrongly)

    with capsys.disabled():
        kinds = ", ".join(f"{name} x{count}" for name, count in stack.faults.items())
        print(
            f"\nfault matrix: faults injected {sum(stack.faults.values())}, "
            f"grants recovered {ALIVE - len(lost)}, grants dead as intended {dead}, "
            f"grants lost {len(lost)}"
        )
        print(
            f"fault matrix: {kinds}; {len(misconfigured)} grants left in the hour-long "
            f"configuration backoff (token still valid); {refresh_requests(fake)} refreshes "
            f"reached the fake; {worker.incarnation} worker starts; {queued} tasks queued at "
            f"the broker restart; {seconds:.0f} s"
        )
        if stack.crashes:
            print(f"fault matrix: Celery died after the broker restart: {stack.crashes}")
    assert not lost, "grants lost:\n" + "\n".join(lost)
    assert not dead_wrongly, "grants Atlassian killed, not marked as intended:\n" + "\n".join(
        dead_wrongly
    )
