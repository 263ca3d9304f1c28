"""Atlassian's personal data reporting, over real HTTP against the fake: batching, closed
accounts erased (everything of them, nothing of others), updated profiles read again, 429
backoff and resuming, a refused (401) token replaced by another grant's, the cycle."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import pre_delete
from django.test import Client
from django.utils import timezone

from atlassian_oauth import beat, personal_data, signals, tasks
from atlassian_oauth.models import AccountReport, AtlassianApp, Connection, Event, Grant
from atlassian_oauth.personal_data import Result
from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    GRACE_ACCOUNT_ID,
    FakeAtlassian,
)
from tests.refresh_helpers import connected_grant

pytestmark = pytest.mark.django_db

BEAT = Event.Actor.BEAT
OTHER_APP = "second-app-client-id"
WEEK = timedelta(days=7)
MINUTE = timedelta(minutes=1)


def in_about(moment: datetime | None, delay: timedelta, within: timedelta = MINUTE) -> bool:
    """``moment`` is ``delay`` from now, give or take ``within``."""
    assert moment is not None
    return abs(moment - (timezone.now() + delay)) < within


def report_requests(fake: FakeAtlassian) -> list[dict[str, Any]]:
    return [e for e in fake.requests_log if e["kind"] == "report_accounts"]


def profile(grant: Grant, name: str, email: str) -> Grant:
    """Store the name and email as the callback does (``connected_grant`` stores none)."""
    Grant.objects.filter(pk=grant.pk).update(account_name=name, account_email=email)
    grant.refresh_from_db()
    return grant


def ada(fake: FakeAtlassian, **kwargs: Any) -> Grant:
    grant = connected_grant(fake, account_id=ADA_ACCOUNT_ID, **kwargs)
    return profile(grant, "Ada Lovelace", "ada@example.com")


def grace(fake: FakeAtlassian, **kwargs: Any) -> Grant:
    grant = connected_grant(fake, username="grace", account_id=GRACE_ACCOUNT_ID, **kwargs)
    return profile(grant, "Grace Hopper", "grace@example.com")


def dead_grants(count: int, *, client_id: str = DEFAULT_CLIENT_ID) -> list[Grant]:
    """``count`` grants that need reconnecting: reported (they hold personal data), never
    asked for a token."""
    now = timezone.now()
    return Grant.objects.bulk_create(
        Grant(
            client_id=client_id,
            account_id=f"acct-{n:03d}",
            account_name=f"User {n}",
            account_email=f"user{n}@example.com",
            access_token=f"dead-access-{n}",
            refresh_token=f"dead-refresh-{n}",
            access_token_expires_at=now - timedelta(days=1),
            consented_at=now - timedelta(days=30),
            status=Grant.Status.NEEDS_RECONNECT,
        )
        for n in range(count)
    )


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``(signal name, arguments)`` of every ``account_closed`` and ``disconnected`` sent."""
    calls: list[tuple[str, dict[str, Any]]] = []
    hooked = []
    for name in ("account_closed", "disconnected"):

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            calls.append((_name, {"sender": sender, **kwargs}))

        signal = getattr(signals, name)
        signal.connect(receiver, weak=False, dispatch_uid=f"test_personal_data.{name}")
        hooked.append((signal, name))
    yield calls
    for signal, name in hooked:
        signal.disconnect(dispatch_uid=f"test_personal_data.{name}")


# ---- batching and the cycle ------------------------------------------------------------------


def test_200_accounts_go_in_3_requests_of_at_most_90(fake_atlassian):
    ada(fake_atlassian)
    dead_grants(199)
    # The last account of the last request: closed, so its erasure shows it was reported.
    fake_atlassian.add_account("acct-198", "user198@example.com", "User 198")
    fake_atlassian.close_account("acct-198")

    (run,) = personal_data.report_due(actor=BEAT)

    assert [e["accounts"] for e in report_requests(fake_atlassian)] == [90, 90, 20]
    assert [e["status"] for e in report_requests(fake_atlassian)] == [204, 204, 200]
    assert (run.result, run.accounts, run.requests, run.closed) == (Result.REPORTED, 200, 3, 1)
    assert not Grant.objects.filter(account_id="acct-198").exists()
    assert Grant.objects.count() == 199
    row = AccountReport.objects.get(client_id=DEFAULT_CLIENT_ID)
    assert row.outcome == AccountReport.Outcome.REPORTED
    assert (row.accounts, row.requests, row.closed, row.resume_after) == (200, 3, 1, "")
    assert row.next_report_at is not None
    assert in_about(row.next_report_at, WEEK)
    assert row.claimed_until is None


def test_a_report_is_not_sent_again_before_its_cycle_is_over(fake_atlassian):
    ada(fake_atlassian)
    personal_data.report_due(actor=BEAT)

    (again,) = personal_data.report_due(actor=BEAT)

    assert again.result == Result.NOT_DUE
    assert again.ok
    assert len(report_requests(fake_atlassian)) == 1
    # Once the week is over it is due again; force reports at once.
    AccountReport.objects.update(next_report_at=timezone.now() - timedelta(seconds=1))
    assert personal_data.report_due(actor=BEAT)[0].result == Result.REPORTED
    assert personal_data.report_due(actor=BEAT, force=True)[0].result == Result.REPORTED
    assert len(report_requests(fake_atlassian)) == 3


def test_the_cycle_period_header_sets_the_next_report(fake_atlassian, oauth_settings):
    ada(fake_atlassian)
    fake_atlassian.report_cycle_period = 3 * 86400

    (run,) = personal_data.report_due(actor=BEAT)

    row = AccountReport.objects.get()
    assert row.cycle_period == 3 * 86400
    assert run.next_report_at == row.next_report_at
    assert in_about(row.next_report_at, timedelta(days=3))
    # Without the header, the REPORT_CYCLE setting.
    fake_atlassian.report_cycle_period = None
    oauth_settings(REPORT_CYCLE=86400)
    personal_data.report_due(actor=BEAT, force=True)
    row.refresh_from_db()
    assert row.cycle_period is None
    assert in_about(row.next_report_at, timedelta(days=1))


def test_each_app_reports_its_own_accounts_with_its_own_token(fake_atlassian, sites):
    fake_atlassian.register_app(OTHER_APP, "second-secret")
    ada(fake_atlassian)
    tokens = fake_atlassian.mint_grant(OTHER_APP, GRACE_ACCOUNT_ID, "read:me offline_access")
    AtlassianApp.objects.create(site=sites[1], client_id=OTHER_APP, client_secret="second-secret")
    Grant.objects.create(
        client_id=OTHER_APP,
        account_id=GRACE_ACCOUNT_ID,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        access_token_expires_at=timezone.now() + timedelta(hours=1),
        consented_at=timezone.now(),
    )

    runs = personal_data.report_due(actor=BEAT)

    assert sorted((r.client_id, r.accounts, r.result) for r in runs) == [
        (DEFAULT_CLIENT_ID, 1, Result.REPORTED),
        (OTHER_APP, 1, Result.REPORTED),
    ]
    assert AccountReport.objects.count() == 2


def test_the_updated_at_sent_is_when_the_profile_was_read(fake_atlassian):
    grant = ada(fake_atlassian)
    # Atlassian changed the profile after the consent (the fake's clock, which is real time).
    fake_atlassian.update_account(ADA_ACCOUNT_ID, name="Ada King")
    Grant.objects.filter(pk=grant.pk).update(consented_at=timezone.now() - timedelta(days=1))

    assert personal_data.reported_accounts(DEFAULT_CLIENT_ID)[0].updated_at < timezone.now()
    personal_data.report_due(actor=BEAT)

    grant.refresh_from_db()
    assert grant.profile_updated_at is not None
    (reported,) = personal_data.reported_accounts(DEFAULT_CLIENT_ID)
    assert reported.updated_at == grant.profile_updated_at


def test_two_runs_never_report_one_app_at_once(fake_atlassian):
    ada(fake_atlassian)
    AccountReport.objects.create(
        client_id=DEFAULT_CLIENT_ID, claimed_until=timezone.now() + timedelta(minutes=5)
    )

    (busy,) = personal_data.report_due(actor=BEAT, force=True)

    assert busy.result == Result.BUSY
    assert busy.ok
    assert report_requests(fake_atlassian) == []
    # A crashed run's claim expires.
    AccountReport.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert personal_data.report_due(actor=BEAT)[0].result == Result.REPORTED


# ---- closed ----------------------------------------------------------------------------------


def test_closed_erases_everything_of_that_account_and_nothing_of_others(
    fake_atlassian, sites, received, django_capture_on_commit_callbacks
):
    adas = ada(fake_atlassian, username="alice")
    connected_grant(fake_atlassian, username="bob", account_id=ADA_ACCOUNT_ID, domain="127.0.0.1")
    graces = grace(fake_atlassian)
    # Ada also uses a second app (an account id is Atlassian-wide: closed there too).
    fake_atlassian.register_app(OTHER_APP, "second-secret")
    other = Grant.objects.create(
        client_id=OTHER_APP,
        account_id=ADA_ACCOUNT_ID,
        account_name="Ada Lovelace",
        account_email="ada@example.com",
        access_token="other-app-access",
        refresh_token="other-app-refresh",
        access_token_expires_at=timezone.now() + timedelta(hours=1),
        consented_at=timezone.now(),
    )
    dave = get_user_model().objects.create_user(username="dave")
    Connection.objects.create(user=dave, site=sites[0], grant=other)
    adas_event = Event.objects.create(
        kind=Event.Kind.CONNECTED,
        actor=Event.Actor.USER,
        grant=adas,
        account_id=ADA_ACCOUNT_ID,
        message="Connected ada@example.com (Ada Lovelace)",
        details={"account": {"email": "ADA@example.com", "names": ["Ada Lovelace", 3]}},
    )
    graces_event = Event.objects.create(
        kind=Event.Kind.CONNECTED,
        actor=Event.Actor.USER,
        grant=graces,
        account_id=GRACE_ACCOUNT_ID,
        message="Connected grace@example.com (Grace Hopper)",
        details={"email": "grace@example.com"},
    )
    history = LogEntry.objects.create(
        user=get_user_model().objects.create_superuser("root"),
        content_type=ContentType.objects.get_for_model(Grant),
        object_id=str(adas.pk),
        object_repr="ada@example.com",
        action_flag=CHANGE,
    )
    tokens_at_delete: list[tuple[str | None, str | None]] = []

    def record(sender: Any, instance: Grant, **kwargs: Any) -> None:
        tokens_at_delete.append((instance.access_token, instance.refresh_token))

    pre_delete.connect(record, sender=Grant, dispatch_uid="test_personal_data.record")
    fake_atlassian.close_account(ADA_ACCOUNT_ID)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run, second_app = personal_data.report_due(actor=BEAT)
    finally:
        pre_delete.disconnect(dispatch_uid="test_personal_data.record")

    assert (run.client_id, run.result, run.closed) == (DEFAULT_CLIENT_ID, Result.REPORTED, 1)
    # The second app's only grant went with the first app's report: nothing left to report.
    assert (second_app.client_id, second_app.result) == (OTHER_APP, Result.NO_ACCOUNTS)
    assert not AccountReport.objects.filter(client_id=OTHER_APP).exists()
    # Every grant of the account, in both apps, is gone, its tokens blanked before the delete.
    assert not Grant.objects.filter(account_id=ADA_ACCOUNT_ID).exists()
    assert tokens_at_delete == [(None, None), (None, None)]
    assert not Connection.objects.filter(user__username__in=["alice", "bob", "dave"]).exists()
    # The users stay: they are the site's, not Atlassian's.
    assert get_user_model().objects.filter(username__in=["alice", "bob", "dave"]).count() == 3
    adas_event.refresh_from_db()
    assert adas_event.erased_at is not None
    assert adas_event.account_id == ADA_ACCOUNT_ID
    assert adas_event.message == "Connected [erased] ([erased])"
    assert adas_event.details == {"account": {"email": "[erased]", "names": ["[erased]", 3]}}
    history.refresh_from_db()
    assert history.object_repr == "[erased]"
    closed = Event.objects.get(kind=Event.Kind.ACCOUNT_CLOSED)
    assert closed.account_id == ADA_ACCOUNT_ID
    assert closed.details == {
        "client_id": DEFAULT_CLIENT_ID,
        "grants": 2,
        "connections": 3,
        "events": 4,  # the connected event and the three disconnects
    }
    assert "ada@example.com" not in closed.message
    assert not Event.objects.filter(message__icontains="ada@example.com").exists()
    # Nothing of Grace changed.
    graces_event.refresh_from_db()
    assert graces_event.erased_at is None
    assert graces_event.message == "Connected grace@example.com (Grace Hopper)"
    assert graces_event.details == {"email": "grace@example.com"}
    graces.refresh_from_db()
    assert (graces.account_email, graces.account_name) == ("grace@example.com", "Grace Hopper")
    assert graces.access_token and graces.refresh_token
    assert Connection.objects.filter(grant=graces).count() == 1
    # One account_closed for integrators, one disconnected per connection.
    (closed_signal,) = [kwargs for name, kwargs in received if name == "account_closed"]
    assert closed_signal["account_id"] == ADA_ACCOUNT_ID
    assert closed_signal["client_id"] == DEFAULT_CLIENT_ID
    assert closed_signal["actor"] == BEAT
    assert closed_signal["sender"] is Grant
    assert sorted(u.get_username() for u in closed_signal["users"]) == ["alice", "bob", "dave"]
    disconnected = [kwargs for name, kwargs in received if name == "disconnected"]
    assert sorted(k["user"].get_username() for k in disconnected) == ["alice", "bob", "dave"]
    assert all(k["account_id"] == ADA_ACCOUNT_ID for k in disconnected)


def test_an_answer_about_an_account_not_reported_erases_nothing(fake_atlassian):
    ada(fake_atlassian)
    bystander = Grant.objects.create(
        client_id=OTHER_APP,
        account_id=GRACE_ACCOUNT_ID,
        access_token="a",
        refresh_token="r",
        access_token_expires_at=timezone.now() + timedelta(hours=1),
        consented_at=timezone.now(),
    )
    fake_atlassian.inject(
        "report_accounts",
        status=200,
        body={"accounts": [{"accountId": GRACE_ACCOUNT_ID, "status": "closed"}]},
    )

    run = personal_data.report_app(DEFAULT_CLIENT_ID, actor=BEAT)

    assert (run.result, run.closed) == (Result.REPORTED, 0)
    assert Grant.objects.filter(pk=bystander.pk).exists()


# ---- updated ---------------------------------------------------------------------------------


def test_updated_reads_the_profile_again_and_stores_it(fake_atlassian):
    grant = ada(fake_atlassian)
    fake_atlassian.update_account(ADA_ACCOUNT_ID, email="ada@king.example", name="Ada King")
    me_before = fake_atlassian.counts["me"]

    (run,) = personal_data.report_due(actor=BEAT)

    assert (run.result, run.updated, run.update_failed) == (Result.REPORTED, 1, 0)
    assert fake_atlassian.counts["me"] == me_before + 1
    grant.refresh_from_db()
    assert (grant.account_email, grant.account_name) == ("ada@king.example", "Ada King")
    assert grant.profile_updated_at is not None
    # The next report sends the new updatedAt, so Atlassian has nothing more to say.
    again = personal_data.report_due(actor=BEAT, force=True)[0]
    assert (again.updated, report_requests(fake_atlassian)[-1]["status"]) == (0, 204)


def test_an_updated_profile_that_cannot_be_read_is_asked_again_next_cycle(fake_atlassian):
    grant = ada(fake_atlassian)
    grace(fake_atlassian)  # the app still has a token to report with
    fake_atlassian.update_account(ADA_ACCOUNT_ID, name="Ada King")
    fake_atlassian.inject("me", status=503)

    (run,) = personal_data.report_due(actor=BEAT)

    assert (run.result, run.updated, run.update_failed) == (Result.REPORTED, 0, 1)
    assert not run.ok
    assert run.kind == "failed"
    grant.refresh_from_db()
    assert (grant.account_name, grant.profile_updated_at) == ("Ada Lovelace", None)
    assert personal_data.report_due(actor=BEAT, force=True)[0].updated == 1


# ---- 429, failures and tokens ----------------------------------------------------------------


def test_429_backs_off_for_retry_after(fake_atlassian):
    ada(fake_atlassian)
    fake_atlassian.inject("report_accounts", status=429, headers={"Retry-After": "120"})

    (limited,) = personal_data.report_due(actor=BEAT)

    assert limited.result == Result.RATE_LIMITED
    assert not limited.ok
    row = AccountReport.objects.get()
    assert row.outcome == AccountReport.Outcome.RATE_LIMITED
    assert row.failures == 1
    assert "429" in row.error
    assert in_about(row.next_report_at, timedelta(seconds=120), within=timedelta(seconds=10))
    # Not before Retry-After has passed...
    assert personal_data.report_due(actor=BEAT)[0].result == Result.NOT_DUE
    assert len(report_requests(fake_atlassian)) == 1
    # ... and then it goes through, and the next is due a cycle later.
    AccountReport.objects.update(next_report_at=timezone.now() - timedelta(seconds=1))
    assert personal_data.report_due(actor=BEAT)[0].result == Result.REPORTED
    row.refresh_from_db()
    assert (row.failures, row.error, row.outcome) == (0, "", AccountReport.Outcome.REPORTED)


def test_429_without_retry_after_backs_off_an_hour_then_longer(fake_atlassian):
    ada(fake_atlassian)
    fake_atlassian.inject("report_accounts", status=429, times=2)

    personal_data.report_due(actor=BEAT)
    first = AccountReport.objects.get().next_report_at
    personal_data.report_due(actor=BEAT, force=True)
    second = AccountReport.objects.get().next_report_at

    assert in_about(first, timedelta(hours=1))
    assert in_about(second, timedelta(hours=2))


@pytest.mark.django_db(transaction=True)
def test_a_report_rate_limited_midway_goes_on_where_it_stopped(fake_atlassian):
    ada(fake_atlassian)
    dead_grants(199)
    fake_atlassian.add_account("acct-000", "user0@example.com", "User 0")
    fake_atlassian.close_account("acct-000")

    def limit_the_next(sender: Any, **kwargs: Any) -> None:
        # The first request's answer is being applied: Atlassian limits the second.
        fake_atlassian.inject("report_accounts", status=429, headers={"Retry-After": "60"})

    signals.account_closed.connect(limit_the_next, dispatch_uid="test_personal_data.limit")
    try:
        (limited,) = personal_data.report_due(actor=BEAT)
    finally:
        signals.account_closed.disconnect(dispatch_uid="test_personal_data.limit")

    assert (limited.result, limited.requests, limited.closed) == (Result.RATE_LIMITED, 1, 1)
    row = AccountReport.objects.get()
    assert row.resume_after == "acct-088"  # the first request's last (Ada's id sorts first)
    AccountReport.objects.update(next_report_at=timezone.now() - timedelta(seconds=1))

    (resumed,) = personal_data.report_due(actor=BEAT)

    assert (resumed.result, resumed.accounts, resumed.requests) == (Result.REPORTED, 110, 2)
    assert [e["accounts"] for e in report_requests(fake_atlassian)] == [90, 90, 90, 20]
    assert [e["status"] for e in report_requests(fake_atlassian)] == [200, 429, 204, 204]
    assert AccountReport.objects.get().resume_after == ""


def test_a_refused_token_is_replaced_by_another_grants(fake_atlassian, caplog):
    refused = ada(fake_atlassian, expires_in=7200)  # the freshest token: tried first
    grace(fake_atlassian)
    # Ada removed the app in "Connected apps": her token still looks valid, Atlassian says 401.
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    caplog.set_level(logging.DEBUG)

    (run,) = personal_data.report_due(actor=BEAT)

    assert (run.result, run.requests) == (Result.REPORTED, 1)
    assert [e["status"] for e in report_requests(fake_atlassian)] == [401, 204]
    refused.refresh_from_db()
    assert refused.status == Grant.Status.ACTIVE  # a 401 here says nothing of the grant
    for grant in Grant.objects.all():
        assert grant.access_token not in caplog.text
        assert grant.refresh_token not in caplog.text
    assert DEFAULT_CLIENT_ID in caplog.text


def test_no_token_accepted_is_recorded_and_retried_later(fake_atlassian, caplog):
    grant = ada(fake_atlassian)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    caplog.set_level(logging.DEBUG)

    (run,) = personal_data.report_due(actor=BEAT)

    assert run.result == Result.NO_TOKEN
    assert DEFAULT_CLIENT_ID in run.error
    row = AccountReport.objects.get()
    assert row.outcome == AccountReport.Outcome.NO_TOKEN
    assert in_about(row.next_report_at, timedelta(hours=1))
    assert grant.access_token and grant.access_token not in caplog.text + row.error
    assert "No access token of app" in caplog.text


def test_at_most_5_tokens_are_tried(fake_atlassian):
    for n in range(8):
        account = f"refused-{n}"
        fake_atlassian.add_account(account, f"{account}@example.com", account)
        connected_grant(fake_atlassian, username=account, account_id=account)
        fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, account)

    (run,) = personal_data.report_due(actor=BEAT)

    assert run.result == Result.NO_TOKEN
    assert [e["status"] for e in report_requests(fake_atlassian)] == [401] * 5


def test_an_atlassian_failure_is_recorded(fake_atlassian):
    ada(fake_atlassian)
    fake_atlassian.inject("report_accounts", status=400, body={"code": 400, "message": "no"})

    (run,) = personal_data.report_due(actor=BEAT)

    assert run.result == Result.FAILED
    assert AccountReport.objects.get().error == "/app/report-accounts/ answered 400."


def test_no_grants_no_report(fake_atlassian):
    assert personal_data.report_due(actor=BEAT) == []
    assert personal_data.plans() == []
    assert report_requests(fake_atlassian) == []


def test_the_plan_says_what_a_run_would_send_without_sending(fake_atlassian):
    ada(fake_atlassian)
    dead_grants(99)

    (plan,) = personal_data.plans()

    assert (plan.client_id, plan.batches, plan.accounts, plan.due) == (
        DEFAULT_CLIENT_ID,
        (90, 10),
        100,
        True,
    )
    assert report_requests(fake_atlassian) == []


# ---- the beat task, the admin ----------------------------------------------------------------


def test_the_beat_reports_hourly_what_is_due(fake_atlassian):
    from demo_site.celery import app

    entry = beat.BEAT_SCHEDULE["atlassian-oauth-report-accounts"]
    assert entry["task"] == beat.REPORT_TASK == tasks.report_accounts.name
    assert beat.REPORT_TASK in app.tasks
    assert entry["schedule"] == 3600
    ada(fake_atlassian)

    assert tasks.report_accounts.apply().get() == {"reported": 1, "skipped": 0, "failed": 0}
    assert tasks.report_accounts.apply().get() == {"reported": 0, "skipped": 1, "failed": 0}
    assert len(report_requests(fake_atlassian)) == 1


def test_admin_shows_the_last_report_per_app(fake_atlassian, sites, admin_client: Client):
    AtlassianApp.objects.create(site=sites[1], client_id=OTHER_APP, client_secret="s")
    ada(fake_atlassian)
    fake_atlassian.close_account(ADA_ACCOUNT_ID)
    grace(fake_atlassian)
    personal_data.report_due(actor=BEAT)
    AccountReport.objects.create(
        client_id=OTHER_APP,
        outcome=AccountReport.Outcome.RATE_LIMITED,
        last_run_at=timezone.now(),
        error="/app/report-accounts/ answered 429.",
    )

    def get(path: str) -> str:
        response = admin_client.get(path, HTTP_HOST="localhost")
        assert response.status_code == 200, path
        return response.content.decode()

    apps_page = get("/admin/atlassian_oauth/atlassianapp/")
    reports_page = get("/admin/atlassian_oauth/accountreport/")
    change = get(f"/admin/atlassian_oauth/atlassianapp/{AtlassianApp.objects.get().pk}/change/")

    assert "Personal data report" in apps_page
    assert "Rate limited" in apps_page
    assert "answered 429" in apps_page
    assert "atlassian-oauth-error" in apps_page
    # The default app (settings) has no row of its own: its report is listed here.
    assert "the default app (settings)" in reports_page
    assert "Reported " in reports_page
    assert "Accounts: 2, requests: 1, closed (erased): 1, updated: 0. Next due " in reports_page
    assert "Rate limited" in change
    add = admin_client.get("/admin/atlassian_oauth/accountreport/add/", HTTP_HOST="localhost")
    assert add.status_code == 403
