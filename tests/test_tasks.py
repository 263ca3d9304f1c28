"""The beat's sweep, the per-grant refresh task and cleanup, run in this process against the fake.

The tasks run through Celery's own ``apply`` (eagerly, here); enqueueing is captured by
replacing ``apply_async``, so what would reach the broker can be inspected.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from unittest import mock

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.db import connection
from django.utils import timezone

from atlassian_oauth import beat, sweep, tasks
from atlassian_oauth.checks import check_celery
from atlassian_oauth.models import AuthorizationState, Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID
from tests.refresh_helpers import connected_grant, expire

pytestmark = pytest.mark.django_db

DAY = 86400.0


@pytest.fixture(autouse=True)
def timings(settings, oauth_settings):
    """The app's defaults, whatever the demo settings choose for its short-lived fake tokens."""
    oauth_settings(
        REFRESH_MARGIN=300,
        KEEPALIVE_AFTER=30 * DAY,
        BEAT_JITTER=30,
        HTTP_TIMEOUT=10,
        REFRESH_WAIT=30,
    )
    settings.ATLASSIAN_OAUTH.pop("REFRESH_RATE_LIMIT", None)


def grant_row(name: str, *, expires_in: float, **fields) -> Grant:
    """A grant row with made-up tokens: enough for the selection, which calls nobody."""
    now = timezone.now()
    defaults = {
        "client_id": DEFAULT_CLIENT_ID,
        "account_id": f"{name}-account",
        "access_token": f"access-{name}",
        "refresh_token": f"refresh-{name}",
        "access_token_expires_at": now + timedelta(seconds=expires_in),
        "consented_at": now,
        "refresh_token_issued_at": now,
    }
    return Grant.objects.create(**{**defaults, **fields})


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def enqueued():
    """Captures ``refresh_grant.apply_async`` calls instead of sending them to the broker."""
    with mock.patch.object(tasks.refresh_grant, "apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def enqueued_batches():
    """Captures the sweep's ``refresh_grants.apply_async`` calls instead of sending them."""
    with mock.patch.object(tasks.refresh_grants, "apply_async") as apply_async:
        yield apply_async


def batch_ids(calls) -> list[int]:
    """The grant ids of captured batch tasks, in the order they were enqueued."""
    return [pk for call in calls.call_args_list for pk in call.args[0][0]]


def run_batches(calls) -> list[str]:
    """Deliver captured batch tasks, in order, as a worker would; each grant's result."""
    return [
        result
        for call in calls.call_args_list
        for result in tasks.refresh_grants.apply(args=call.args[0]).get()
    ]


# ---- which grants are due ------------------------------------------------------------------


@pytest.fixture
def mixed_grants():
    """One grant of each kind; the name says whether the sweep must pick it."""
    return {
        "expired": grant_row("expired", expires_in=-60),
        "expiring": grant_row("expiring", expires_in=120),
        "fresh": grant_row("fresh", expires_in=3600),
        "idle": grant_row("idle", expires_in=3000, refresh_token_issued_at=ago(31 * DAY)),
        "idle_but_refreshed": grant_row(
            "idle-but-refreshed",
            expires_in=3000,
            refresh_token_issued_at=ago(31 * DAY),
            last_refreshed_at=ago(600),
        ),
        "backing_off": grant_row(
            "backing-off", expires_in=-60, next_refresh_at=timezone.now() + timedelta(minutes=5)
        ),
        "backoff_over": grant_row("backoff-over", expires_in=60, next_refresh_at=ago(1)),
        "needs_reconnect": grant_row(
            "needs-reconnect", expires_in=-60, status=Grant.Status.NEEDS_RECONNECT
        ),
        "no_refresh_token": grant_row(
            "no-refresh-token",
            expires_in=-60,
            refresh_token=None,
            status=Grant.Status.NO_REFRESH_TOKEN,
        ),
    }


def test_due_grants_are_expiring_or_idle_and_neither_dead_nor_backing_off(mixed_grants):
    due = list(sweep.due_grants())
    assert [g.account_id for g in due] == [
        "expired-account",
        "backoff-over-account",
        "expiring-account",
        "idle-account",  # most urgent first: by access token expiry
    ]


def test_due_grants_is_one_query(mixed_grants, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert len(list(sweep.due_grants())) == 4


def test_due_grants_uses_the_due_index_on_postgresql(mixed_grants):
    if connection.vendor != "postgresql":
        pytest.skip("the query plan is checked on PostgreSQL")
    with connection.cursor() as cursor:
        # A handful of rows fit one page, where a sequential scan always wins; the point is
        # that an index serves the query once the table is large.
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = sweep.due_grants().explain()
    # One of the grant's status-led indexes serves it (which one, the planner picks by costs
    # that a handful of rows leaves close: seen are the due, keep-alive and retry indexes);
    # what must not happen is reading the whole table. Issue 12's benchmark measures the
    # plan at 100k rows.
    assert "Seq Scan" not in plan, plan
    assert any(index.name in plan for index in Grant._meta.indexes), plan


def test_the_sweep_selects_the_same_grants_in_two_queries(mixed_grants, django_assert_num_queries):
    now = timezone.now()
    expected = list(sweep.due_grants(now).values_list("pk", "access_token_expires_at"))
    with django_assert_num_queries(2):
        assert sweep.due_for_enqueue(now) == expected
    with django_assert_num_queries(2):
        assert sweep.due_for_enqueue(now, limit=3) == expected[:3]
    assert len(expected) == 4


def test_the_sweep_merges_expiring_and_idle_grants_by_urgency(oauth_settings):
    idle = [
        grant_row(f"idle{i}", expires_in=1000 + 600 * i, refresh_token_issued_at=ago(31 * DAY))
        for i in range(3)
    ]
    expiring = [grant_row(f"expiring{i}", expires_in=-30 + 100 * i) for i in range(3)]
    # Idle and expiring at once: selected once, among the expiring ones.
    both = grant_row("both", expires_in=250, refresh_token_issued_at=ago(31 * DAY))
    order = [pk for pk, _ in sweep.due_for_enqueue(timezone.now())]
    assert order == [*(g.pk for g in expiring), both.pk, *(g.pk for g in idle)]
    assert [pk for pk, _ in sweep.due_for_enqueue(timezone.now(), limit=5)] == order[:5]


def test_each_query_of_the_sweep_reads_a_range_of_its_index(mixed_grants):
    now = timezone.now()
    for half, index in (
        (Grant.objects.due_expiring(now), "atlassian_grant_due_idx"),
        (Grant.objects.due_idle(now), "atlassian_grant_keepalive_idx"),
    ):
        queryset = half.values_list("pk", "access_token_expires_at")
        if connection.vendor == "sqlite":
            plan = queryset.explain()
            # A range of the index (status and a bound on the second column), not every
            # active row (what the OR of both halves gets: "USING INDEX ... (status=?)").
            assert f"USING INDEX {index} (status=? AND" in plan, plan
        elif connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
            plan = queryset.explain()
            assert "Seq Scan" not in plan and "atlassian_grant" in plan, plan


def test_the_sweep_costs_the_same_queries_whatever_is_due(enqueued_batches):
    def sweep_queries() -> int:
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            tasks.refresh_due_grants()
        return len(captured.captured_queries)

    grant_row("expired0", expires_in=-10)
    sweep_queries()  # the first one writes the heartbeat's row
    few = sweep_queries()
    for index in range(1, 30):
        grant_row(f"expired{index}", expires_in=-10)
        grant_row(f"idle{index}", expires_in=3000, refresh_token_issued_at=ago(31 * DAY))
    assert sweep_queries() == few
    assert enqueued_batches.call_count >= 2


def test_the_margin_and_keepalive_settings_decide(mixed_grants, oauth_settings):
    oauth_settings(REFRESH_MARGIN=7200, KEEPALIVE_AFTER=90 * DAY)
    due = {g.account_id for g in sweep.due_grants()}
    assert "fresh-account" in due and "idle-account" in due  # expiring within two hours now
    oauth_settings(REFRESH_MARGIN=1)
    assert "idle-account" not in {g.account_id for g in sweep.due_grants()}


# ---- enqueueing ----------------------------------------------------------------------------


def test_the_sweep_enqueues_ids_only_within_the_jitter(
    mixed_grants, enqueued_batches, oauth_settings
):
    oauth_settings(BEAT_JITTER=5)
    assert tasks.refresh_due_grants.apply().get() == 4
    due_ids = {g.pk for g in sweep.due_grants()}
    assert sorted(batch_ids(enqueued_batches)) == sorted(due_ids)
    for call in enqueued_batches.call_args_list:
        ((grant_ids, offsets),) = call.args
        # Ids and numbers only: no token, no model instance in the broker.
        assert all(type(pk) is int for pk in grant_ids)
        assert all(type(offset) is float for offset in offsets)
        assert set(call.kwargs) == {
            "countdown",
            "soft_time_limit",
            "time_limit",
            "argsrepr",
            "kwargsrepr",
        }  # no secrets
        # What the worker logs of the task: the ids and offsets, nothing else.
        assert call.kwargs["argsrepr"] == repr((grant_ids, offsets))
        assert call.kwargs["kwargsrepr"] == "{}"
        assert 0 <= call.kwargs["countdown"] < 5
        assert offsets[0] == 0.0 and offsets == sorted(offsets)
        assert call.kwargs["countdown"] + offsets[-1] < 5  # every start within the jitter
        assert offsets[-1] < sweep.BATCH_WINDOW


def test_the_sweep_sends_one_message_per_batch_of_grants(enqueued_batches, oauth_settings):
    oauth_settings(BEAT_JITTER=0.5, SWEEP_BATCH_SIZE=4)
    grants = [grant_row(f"expired{i}", expires_in=-100 + i) for i in range(10)]
    assert tasks.refresh_due_grants() == 10
    # All start within a second: batches of at most four, every grant in exactly one.
    sizes = [len(call.args[0][0]) for call in enqueued_batches.call_args_list]
    assert sizes == [4, 4, 2]
    assert sorted(batch_ids(enqueued_batches)) == sorted(g.pk for g in grants)


def test_batches_start_within_a_window_of_their_first_and_keep_each_start():
    planned = [(1, 0.0), (2, 0.4), (3, 0.99), (4, 1.0), (5, 5.0), (6, 5.2), (7, 5.3)]
    batches = sweep.batches(list(reversed(planned)), size=2)
    assert batches == [
        sweep.Batch((1, 2), 0.0, (0.0, 0.4)),
        sweep.Batch((3, 4), 0.99, (0.0, 0.01)),
        sweep.Batch((5, 6), 5.0, (0.0, 0.2)),
        sweep.Batch((7,), 5.3, (0.0,)),
    ]
    assert sweep.batches([], size=20) == []
    # One per batch when the window holds one: the rate limit's spacing stays as it was.
    spaced = [(pk, pk * 1.5) for pk in range(4)]
    assert [b.grant_ids for b in sweep.batches(spaced, size=20)] == [(0,), (1,), (2,), (3,)]


def test_the_rate_limit_spaces_the_refreshes_of_a_batch(enqueued_batches, oauth_settings):
    oauth_settings(BEAT_JITTER=30, REFRESH_RATE_LIMIT=4)
    for index in range(8):
        grant_row(f"idle{index}", expires_in=3000 + index, refresh_token_issued_at=ago(31 * DAY))
    assert tasks.refresh_due_grants() == 8
    starts = sorted(
        call.kwargs["countdown"] + offset
        for call in enqueued_batches.call_args_list
        for offset in call.args[0][1]
    )
    for index, start in enumerate(starts):
        assert index / 4 <= start < index / 4 + 0.25 + 0.001


def test_a_batch_waits_for_each_grants_offset(fake_atlassian):
    accounts = [f"5b10offset{i:016d}" for i in range(3)]
    for index, account_id in enumerate(accounts):
        fake_atlassian.add_account(account_id, f"u{index}@example.com", f"User {index}")
    grants = [
        connected_grant(fake_atlassian, username=f"u{i}", account_id=account_id)
        for i, account_id in enumerate(accounts)
    ]
    for grant in grants:
        expire(grant)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    outcomes = list(
        sweep.refresh_each(
            [g.pk for g in grants], [0.0, 0.5, 0.5], actor=Event.Actor.BEAT, sleep=sleep
        )
    )
    assert [o.result for o in outcomes] == [sweep.Result.REFRESHED] * 3
    assert len(slept) == 1 and 0 < slept[0] <= 0.5  # the second waits; the third is due then
    assert fake_atlassian.counts["refresh"] == 3


def test_the_rate_limit_spaces_the_refreshes(enqueued, oauth_settings):
    oauth_settings(BEAT_JITTER=30, REFRESH_RATE_LIMIT=2)
    for index in range(6):  # idle grants: their access tokens last, so nothing is rushed
        grant_row(f"idle{index}", expires_in=3000 + index, refresh_token_issued_at=ago(31 * DAY))
    assert sweep.enqueue_due(lambda pk, countdown: enqueued((pk,), countdown=countdown)) == 6
    delays = [call.kwargs["countdown"] for call in enqueued.call_args_list]
    for index, delay in enumerate(delays):
        assert index / 2 <= delay < index / 2 + 0.5


def test_the_rate_limit_yields_to_an_imminent_expiry(enqueued, oauth_settings):
    oauth_settings(REFRESH_RATE_LIMIT=0.1, HTTP_TIMEOUT=5)
    expired = [grant_row(f"expired{i}", expires_in=-100 + i) for i in range(3)]
    soon = grant_row("soon", expires_in=20)
    sweep.enqueue_due(lambda pk, countdown: enqueued((pk,), countdown=countdown))
    delays = {call.args[0][0]: call.kwargs["countdown"] for call in enqueued.call_args_list}
    for index, grant in enumerate(expired):  # already expired: waiting a slot costs nothing
        assert index * 10 <= delays[grant.pk] < index * 10 + 10
    assert delays[soon.pk] <= 20 - 5  # its slot (30 s) would be after the expiry


def test_with_a_rate_limit_one_sweep_takes_what_fits_before_the_next(enqueued, oauth_settings):
    oauth_settings(REFRESH_RATE_LIMIT=0.05)
    grants = [grant_row(f"expired{i}", expires_in=-100 + i) for i in range(5)]
    assert sweep.enqueue_due(lambda pk, countdown: enqueued((pk,), countdown=countdown)) == 3
    assert [call.args[0][0] for call in enqueued.call_args_list] == [g.pk for g in grants[:3]]


# ---- the refresh task ----------------------------------------------------------------------


def test_the_refresh_task_has_late_acks_and_no_retries():
    task = tasks.refresh_grant
    assert task.acks_late and task.reject_on_worker_lost
    assert not getattr(task, "autoretry_for", ())  # a dead grant must not be retried


def test_the_sweep_gives_each_task_time_limits_from_the_settings_of_the_moment(
    fake_atlassian, oauth_settings
):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    oauth_settings(REFRESH_WAIT=5, HTTP_TIMEOUT=2)
    with mock.patch.object(tasks.refresh_grants, "apply_async") as apply_async:
        assert tasks.refresh_due_grants() == 1
    options = apply_async.call_args.kwargs
    assert (options["soft_time_limit"], options["time_limit"]) == beat.time_limits()
    assert 5 + 2 < options["soft_time_limit"] < options["time_limit"]


def test_a_batch_gets_time_for_each_of_its_refreshes(enqueued_batches, oauth_settings):
    oauth_settings(REFRESH_WAIT=5, HTTP_TIMEOUT=2, BEAT_JITTER=0.1, SWEEP_BATCH_SIZE=3)
    for index in range(3):
        grant_row(f"expired{index}", expires_in=-10 + index)
    assert tasks.refresh_due_grants() == 3
    options = enqueued_batches.call_args.kwargs
    ((_, offsets),) = enqueued_batches.call_args.args
    assert (options["soft_time_limit"], options["time_limit"]) == beat.time_limits(3, offsets[-1])
    assert options["soft_time_limit"] >= 3 * (5 + 2 * 2)
    # The check compares the broker's visibility timeout with the longest batch.
    assert beat.longest_time_limits() == beat.time_limits(3, sweep.BATCH_WINDOW)


def test_the_task_refreshes_a_due_grant_once(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "refreshed"
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.version == grant.version + 1 and stored.access_token != grant.access_token
    assert fake_atlassian.counts["refresh"] == 1
    assert not Event.objects.exists()  # routine: no event row (issue 12)


def test_a_task_delivered_twice_refreshes_once(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    first = tasks.refresh_grant.apply(args=(grant.pk,)).get()
    second = tasks.refresh_grant.apply(args=(grant.pk,)).get()
    assert (first, second) == ("refreshed", "still fresh")
    assert fake_atlassian.counts["refresh"] == 1


def test_an_idle_grant_gets_one_keepalive_refresh(fake_atlassian):
    grant = connected_grant(fake_atlassian)  # its access token is fresh for an hour
    Grant.objects.filter(pk=grant.pk).update(refresh_token_issued_at=ago(31 * DAY))
    assert [g.pk for g in sweep.due_grants()] == [grant.pk]
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "refreshed"
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "still fresh"
    assert fake_atlassian.counts["refresh"] == 1
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.refresh_token_issued_at > ago(60)
    assert list(sweep.due_grants()) == []


def test_a_keepalive_without_a_new_refresh_token_is_not_repeated(fake_atlassian):
    fake_atlassian.refresh_omits_refresh_token = True
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(refresh_token_issued_at=ago(31 * DAY))
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "refreshed"
    # The refresh token is as old as before, but it was just used: not due again.
    assert list(sweep.due_grants()) == []
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "still fresh"
    assert fake_atlassian.counts["refresh"] == 1


def test_a_task_for_a_deleted_grant_does_no_harm(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    grant_id = grant.pk
    grant.delete()
    result = tasks.refresh_grant.apply(args=(grant_id,))
    assert result.successful() and result.get() == "gone"
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_a_dead_grant_is_never_sent_to_atlassian_again(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "needs reconnect"
    assert fake_atlassian.counts["refresh"] == 1
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.NEEDS_RECONNECT
    assert list(sweep.due_grants()) == []
    # A stale copy of the task still in the queue: answered from the row, no HTTP.
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "needs reconnect"
    assert fake_atlassian.counts["refresh"] == 1


def test_a_transient_failure_is_logged_and_left_to_the_backoff(fake_atlassian, caplog):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject("refresh", status=503, headers={"Retry-After": "120"})
    result = tasks.refresh_grant.apply(args=(grant.pk,))
    assert result.successful() and result.get() == "failed"  # not raised, so not retried
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.next_refresh_at is not None and stored.next_refresh_at > timezone.now()
    assert list(sweep.due_grants()) == []  # the next sweeps wait for next_refresh_at
    # Logged once, where the answer came in, with the grant and when it is tried again.
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage()) for r in logged] == [
        (
            "atlassian_oauth.refresh",
            f"Refresh of grant {grant.pk} ({ADA_ACCOUNT_ID}) [beat] failed, next attempt in "
            "120 s (its access token expired): Atlassian's token endpoint answered 503 "
            "injected_fault: Injected fault.",
        )
    ]
    assert grant.refresh_token not in caplog.text and grant.access_token not in caplog.text


def test_the_soft_time_limit_is_caught(caplog):
    with mock.patch.object(sweep, "refresh_if_due", side_effect=SoftTimeLimitExceeded()):
        result = tasks.refresh_grant.apply(args=(1,))
    assert result.successful() and result.get() == "failed"
    assert [r.getMessage() for r in caplog.records if r.name == tasks.__name__] == [
        "Refresh of grant 1 took longer than the task's time limit; the next sweep retries it."
    ]


def test_the_soft_time_limit_of_a_batch_names_the_grants_left(caplog):
    done = sweep.Outcome(1, sweep.Result.FRESH)
    with mock.patch.object(
        sweep, "refresh_if_due", side_effect=[done, SoftTimeLimitExceeded()]
    ) as refresh_if_due:
        result = tasks.refresh_grants.apply(args=([1, 2, 3], [0.0, 0.0, 0.0]))
    assert result.successful() and result.get() == ["still fresh", "failed", "failed"]
    assert refresh_if_due.call_count == 2  # grant 3 is left to the next sweep
    assert [r.getMessage() for r in caplog.records if r.name == tasks.__name__] == [
        "Refreshes of grants 2, 3 took longer than the task's time limit; the next sweep "
        "retries them."
    ]


def test_the_batch_task_has_late_acks_and_no_retries():
    task = tasks.refresh_grants
    assert task.acks_late and task.reject_on_worker_lost
    assert not getattr(task, "autoretry_for", ())


def test_two_sweeps_back_to_back_cost_one_refresh(fake_atlassian, enqueued_batches):
    ada = connected_grant(fake_atlassian)
    grace = connected_grant(fake_atlassian, username="bob", account_id=GRACE_ACCOUNT_ID)
    expire(ada)
    expire(grace)
    tasks.refresh_due_grants.apply()
    tasks.refresh_due_grants.apply()
    assert sorted(batch_ids(enqueued_batches)) == sorted([ada.pk, ada.pk, grace.pk, grace.pk])
    assert sorted(run_batches(enqueued_batches)) == ["refreshed"] * 2 + ["still fresh"] * 2
    assert fake_atlassian.counts["refresh"] == 2


# ---- cleanup -------------------------------------------------------------------------------


def test_cleanup_deletes_old_events_and_expired_authorizations_only(oauth_settings):
    oauth_settings(EVENT_RETENTION=10 * DAY)
    old = Event.objects.create(kind=Event.Kind.REFRESHED, actor=Event.Actor.BEAT)
    Event.objects.filter(pk=old.pk).update(created_at=ago(11 * DAY))
    recent = Event.objects.create(kind=Event.Kind.REFRESHED, actor=Event.Actor.BEAT)
    Event.objects.filter(pk=recent.pk).update(created_at=ago(9 * DAY))
    user = get_user_model().objects.create_user("alice")
    site, _ = Site.objects.get_or_create(domain="localhost", defaults={"name": "localhost"})

    def state(name: str, expires_in: float) -> AuthorizationState:
        return AuthorizationState.objects.create(
            state_hash=name,
            session_binding_hash="binding",
            user=user,
            site=site,
            client_id=DEFAULT_CLIENT_ID,
            redirect_uri="https://example.com/callback/",
            expires_at=timezone.now() + timedelta(seconds=expires_in),
        )

    state("expired", -1)
    pending = state("pending", 300)
    assert tasks.cleanup.apply().get() == {"events": 1, "authorization_states": 1}
    assert list(Event.objects.all()) == [recent]
    assert list(AuthorizationState.objects.all()) == [pending]


# ---- the beat schedule and its checks ------------------------------------------------------


def test_the_beat_schedule_names_registered_tasks():
    from demo_site.celery import app

    names = {entry["task"] for entry in tasks.BEAT_SCHEDULE.values()}
    assert names == {
        beat.SWEEP_TASK,
        beat.CLEANUP_TASK,
        beat.REPORT_TASK,
        beat.SYNC_RESOURCES_TASK,
    }
    assert names | {beat.REFRESH_TASK} <= set(app.tasks)


@pytest.fixture
def celery_settings(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.CELERY_BEAT_SCHEDULE = {**beat.BEAT_SCHEDULE}
    return settings


def test_a_complete_celery_configuration_passes(celery_settings):
    assert check_celery() == []


def test_a_beat_schedule_without_the_sweep_is_w004(celery_settings):
    celery_settings.CELERY_BEAT_SCHEDULE = {"other": {"task": "x.y", "schedule": 5}}
    (warning,) = check_celery()
    assert warning.id == "atlassian_oauth.W004"
    assert "ATLASSIAN_OAUTH_BEAT_SCHEDULE" in (warning.hint or "")
    del celery_settings.CELERY_BEAT_SCHEDULE
    assert [m.id for m in check_celery()] == ["atlassian_oauth.W004"]


def test_without_celery_settings_w004_stays_quiet(settings):
    for name in ("CELERY_BROKER_URL", "CELERY_BEAT_SCHEDULE", "CELERY_BROKER_TRANSPORT_OPTIONS"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert check_celery() == []


def test_a_visibility_timeout_shorter_than_a_task_is_w005(celery_settings, oauth_settings):
    celery_settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
    (warning,) = check_celery()
    assert warning.id == "atlassian_oauth.W005"
    assert "visibility timeout of 60 s" in warning.msg
    # SQS's default (30 minutes) is long enough for the default limits; a filesystem broker
    # has no visibility timeout at all.
    celery_settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    celery_settings.CELERY_BROKER_URL = "sqs://"
    assert check_celery() == []
    oauth_settings(REFRESH_WAIT=1800)
    assert [m.id for m in check_celery()] == ["atlassian_oauth.W005"]
    celery_settings.CELERY_BROKER_URL = "filesystem://"
    assert check_celery() == []


@pytest.mark.parametrize(("lock", "http"), [(600, 10), (900, 10), (15, 10), (20, 10)])
def test_a_lock_timeout_outside_its_bounds_is_w007(celery_settings, oauth_settings, lock, http):
    oauth_settings(REFRESH_LOCK_TIMEOUT=lock, HTTP_TIMEOUT=http)
    (warning,) = check_celery()
    assert warning.id == "atlassian_oauth.W007"
    assert "REFRESH_LOCK_TIMEOUT" in warning.msg


def test_a_broken_setting_is_left_to_e006(celery_settings, oauth_settings):
    oauth_settings(HTTP_TIMEOUT="x")
    assert check_celery() == []


def test_a_short_lived_token_renewed_a_moment_ago_is_not_due(fake_atlassian):
    # Atlassian answered an expires_in under the margin: the sweep must not enqueue it every
    # time while the token it just got is valid (ensure_fresh would do nothing with it).
    grant = connected_grant(fake_atlassian, expires_in=50)
    Grant.objects.filter(pk=grant.pk).update(last_refreshed_at=timezone.now())
    assert grant.pk not in {g.pk for g in sweep.due_grants()}
    Grant.objects.filter(pk=grant.pk).update(
        last_refreshed_at=timezone.now() - timedelta(seconds=61)
    )
    assert grant.pk in {g.pk for g in sweep.due_grants()}
