"""The beat's sweep, the per-grant refresh task and cleanup, run in this process against the fake.

The tasks run through Celery's own ``apply`` (eagerly, here); enqueueing is captured by
replacing ``apply_async``, so what would reach the broker can be inspected.
"""

from __future__ import annotations

import logging
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


def run_enqueued(calls) -> list[str]:
    """Deliver captured refresh tasks, in order, as a worker would."""
    return [tasks.refresh_grant.apply(args=call.args[0]).get() for call in calls.call_args_list]


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


def test_the_margin_and_keepalive_settings_decide(mixed_grants, oauth_settings):
    oauth_settings(REFRESH_MARGIN=7200, KEEPALIVE_AFTER=90 * DAY)
    due = {g.account_id for g in sweep.due_grants()}
    assert "fresh-account" in due and "idle-account" in due  # expiring within two hours now
    oauth_settings(REFRESH_MARGIN=1)
    assert "idle-account" not in {g.account_id for g in sweep.due_grants()}


# ---- enqueueing ----------------------------------------------------------------------------


def test_the_sweep_enqueues_ids_only_within_the_jitter(mixed_grants, enqueued, oauth_settings):
    oauth_settings(BEAT_JITTER=5)
    assert tasks.refresh_due_grants.apply().get() == 4
    due_ids = [g.pk for g in sweep.due_grants()]
    assert [call.args[0] for call in enqueued.call_args_list] == [(pk,) for pk in due_ids]
    for call in enqueued.call_args_list:
        ((grant_id,),) = call.args
        assert type(grant_id) is int  # no token, no model instance in the broker
        assert set(call.kwargs) == {"countdown", "soft_time_limit", "time_limit"}  # no secrets
        assert 0 <= call.kwargs["countdown"] < 5


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
    with mock.patch.object(tasks.refresh_grant, "apply_async") as apply_async:
        assert tasks.refresh_due_grants() == 1
    options = apply_async.call_args.kwargs
    assert (options["soft_time_limit"], options["time_limit"]) == beat.time_limits()
    assert 5 + 2 < options["soft_time_limit"] < options["time_limit"]


def test_the_task_refreshes_a_due_grant_once(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "refreshed"
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.version == grant.version + 1 and stored.access_token != grant.access_token
    assert fake_atlassian.counts["refresh"] == 1
    assert Event.objects.get(kind=Event.Kind.REFRESHED).actor == Event.Actor.BEAT


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


def test_two_sweeps_back_to_back_cost_one_refresh(fake_atlassian, enqueued):
    ada = connected_grant(fake_atlassian)
    grace = connected_grant(fake_atlassian, username="bob", account_id=GRACE_ACCOUNT_ID)
    expire(ada)
    expire(grace)
    tasks.refresh_due_grants.apply()
    tasks.refresh_due_grants.apply()
    assert sorted(call.args[0][0] for call in enqueued.call_args_list) == sorted(
        [ada.pk, ada.pk, grace.pk, grace.pk]
    )
    assert sorted(run_enqueued(enqueued)) == ["refreshed"] * 2 + ["still fresh"] * 2
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
