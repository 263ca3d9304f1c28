"""What operators read: log lines that name the grant and what happened, and the commands'
output and exit status as `manage.py` really gives them (a subprocess, not call_command)."""

from __future__ import annotations

import logging
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from atlassian_oauth import operations, sweep, tasks
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID
from tests.helpers import PYTHON, REPO
from tests.refresh_helpers import connected_grant, expire
from tests.refresh_worker import worker_env

ADA_EMAIL = "ada@example.com"


def ada(fake_atlassian, **kwargs) -> Grant:
    """Ada's grant, with the email the callback would have stored from /me."""
    grant = connected_grant(fake_atlassian, **kwargs)
    Grant.objects.filter(pk=grant.pk).update(account_email=ADA_EMAIL)
    return Grant.objects.get(pk=grant.pk)


def messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


# ---- logs ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweep_says_how_many_refreshes_it_enqueued_and_of_which_grants(fake_atlassian, caplog):
    caplog.set_level(logging.INFO, logger="atlassian_oauth")
    one = ada(fake_atlassian)
    expire(one)
    assert sweep.enqueue_due(lambda grant_id, countdown: None) == 1
    assert messages(caplog, "atlassian_oauth.sweep") == [f"Enqueued 1 refresh (grant {one.pk})."]

    caplog.clear()
    two = connected_grant(fake_atlassian, username="bob", account_id=GRACE_ACCOUNT_ID)
    expire(two)
    assert sweep.enqueue_due(lambda grant_id, countdown: None) == 2
    # Most urgent first; both expired a second ago, so either may lead.
    assert messages(caplog, "atlassian_oauth.sweep") in (
        [f"Enqueued 2 refreshes (grants {one.pk}, {two.pk})."],
        [f"Enqueued 2 refreshes (grants {two.pk}, {one.pk})."],
    )

    caplog.clear()
    Grant.objects.update(access_token_expires_at=timezone.now() + timedelta(hours=1))
    assert sweep.enqueue_due(lambda grant_id, countdown: None) == 0
    assert messages(caplog, "atlassian_oauth.sweep") == []  # nothing due: nothing to say


def test_a_long_list_of_enqueued_grants_is_cut():
    ids = list(range(1, 26))
    assert sweep.enqueued_message(ids) == (
        "Enqueued 25 refreshes (grants " + ", ".join(map(str, range(1, 21))) + " and 5 more)."
    )


@pytest.mark.django_db
def test_a_refresh_logs_the_grant_its_account_and_who_asked(fake_atlassian, caplog):
    caplog.set_level(logging.INFO, logger="atlassian_oauth")
    grant = ada(fake_atlassian)
    expire(grant)
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "refreshed"
    assert f"Refreshed grant {grant.pk} ({ADA_EMAIL}) [beat]: the access token now expires in " in (
        "\n".join(messages(caplog, "atlassian_oauth.refresh"))
    )
    stored = Grant.objects.get(pk=grant.pk)
    for secret in (grant.access_token, grant.refresh_token, stored.access_token):
        assert secret and secret not in caplog.text


@pytest.mark.django_db
def test_a_dead_grant_is_logged_once_with_its_account(fake_atlassian, caplog):
    caplog.set_level(logging.INFO, logger="atlassian_oauth")
    grant = ada(fake_atlassian)
    expire(grant)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == "needs reconnect"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(". ")[0] for r in warnings] == [
        f"Refresh of grant {grant.pk} ({ADA_EMAIL}) [beat] failed: invalid_grant, needs reconnect"
    ]
    assert warnings[0].name == "atlassian_oauth.refresh"


@pytest.mark.django_db
def test_a_transient_failure_says_when_the_next_attempt_is(fake_atlassian, caplog):
    caplog.set_level(logging.INFO, logger="atlassian_oauth")
    grant = ada(fake_atlassian)
    fake_atlassian.inject("refresh", status=503, headers={"Retry-After": "120"})
    # Fresh, so the application keeps working: the log line says so.
    outcome = sweep.refresh_if_due(grant.pk, actor=Event.Actor.COMMAND, force=True)
    assert outcome.result == sweep.Result.FAILED
    assert messages(caplog, "atlassian_oauth.refresh") == [
        f"Refresh of grant {grant.pk} ({ADA_EMAIL}) [command] failed, next attempt in 120 s "
        "(its access token still works): Atlassian's token endpoint answered 503 "
        "injected_fault: Injected fault."
    ]


@pytest.mark.django_db
def test_a_task_that_finds_another_worker_refreshing_says_so(
    fake_atlassian, caplog, oauth_settings
):
    caplog.set_level(logging.INFO, logger="atlassian_oauth")
    oauth_settings(REFRESH_WAIT=0.2)
    grant = ada(fake_atlassian)
    expire(grant)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_lock_token="another-worker",
        refresh_lock_until=timezone.now() + timedelta(minutes=1),
    )
    assert tasks.refresh_grant.apply(args=(grant.pk,)).get() == sweep.Result.BUSY
    assert messages(caplog, "atlassian_oauth.tasks") == [
        f"Refresh of grant {grant.pk} ({ADA_EMAIL}) skipped: another worker is refreshing it."
    ]
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db
def test_a_task_for_a_deleted_grant_says_so(caplog):
    caplog.set_level(logging.INFO, logger="atlassian_oauth")
    assert tasks.refresh_grant.apply(args=(424242,)).get() == "gone"
    assert messages(caplog, "atlassian_oauth.tasks") == [
        "Refresh of grant 424242 skipped: the grant no longer exists."
    ]


# ---- admin's "Refresh now" forces, on a worker too ------------------------------------------


@pytest.mark.django_db
def test_refresh_now_goes_past_a_backoff(fake_atlassian, settings):
    del settings.CELERY_BROKER_URL
    grant = ada(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_failures=2, next_refresh_at=timezone.now() + timedelta(minutes=30)
    )
    run = operations.refresh_now([grant.pk], actor=Event.Actor.ADMIN)
    assert run.results == [(grant.pk, "refreshed")]
    assert fake_atlassian.counts["refresh"] == 1


@pytest.mark.django_db
def test_the_enqueued_refresh_now_forces_as_the_inline_one_does(
    fake_atlassian, settings, monkeypatch
):
    from celery import current_app

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append(kw))
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    grant = ada(fake_atlassian)  # fresh: only a forced refresh renews it
    operations.refresh_now([grant.pk], actor=Event.Actor.ADMIN)
    (options,) = sent
    assert options["kwargs"] == {"force": True, "actor": "admin"}  # plain words, no secret
    # What a worker does with that message:
    result = tasks.refresh_grant.apply(args=options["args"], kwargs=options["kwargs"]).get()
    assert result == "refreshed"
    assert Event.objects.get(kind=Event.Kind.REFRESHED).actor == Event.Actor.ADMIN


# ---- manage.py, for real ------------------------------------------------------------------


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "atlassian_oauth", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def no_trace(stderr: str) -> None:
    assert "CommandError" not in stderr and "Traceback" not in stderr, stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_manage_py_status_and_refresh_exit_codes_without_a_trace(fake_atlassian):
    grant = ada(fake_atlassian)
    env = worker_env(fake_atlassian.url)

    healthy = manage(env, "status")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.rstrip().endswith("\n1 connection, healthy.")
    no_trace(healthy.stderr)

    expire(grant)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    refreshed = manage(env, "refresh", "--user", "alice")
    assert refreshed.returncode == 1, refreshed.stderr
    assert ": failed, needs reconnect: " in refreshed.stdout
    assert refreshed.stdout.rstrip().endswith("\n0 refreshed, 0 skipped, 1 failed.")
    no_trace(refreshed.stderr)

    status = manage(env, "status")
    assert status.returncode == 2, status.stderr
    assert status.stdout.rstrip().endswith("\n1 of 1 connection needs attention (listed above).")
    assert "Next step:         Ask alice to reconnect" in status.stdout
    no_trace(status.stderr)
    assert status.stderr.strip() == ""

    unknown = manage(env, "status", "--user", "nobody")
    assert unknown.returncode == 1
    # A real error still says so, on stderr, as Django's commands do.
    assert "No user with username 'nobody'" in unknown.stderr

    help_text = manage(env, "status", "--help").stdout
    assert "Exit status: 0 when every connection is healthy" in help_text
    assert "2 when any\nneeds attention" in help_text
