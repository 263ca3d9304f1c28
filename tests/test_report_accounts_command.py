"""`manage.py atlassian_oauth report-accounts [--force] [--dry-run]` against the fake."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from atlassian_oauth.models import AccountReport, Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID
from tests.refresh_helpers import connected_grant
from tests.test_personal_data import dead_grants, report_requests

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("atlassian_oauth", "report-accounts", *args, stdout=out, no_color=True)
    return out.getvalue()


def run_failing(*args: str) -> tuple[CommandError, str]:
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("atlassian_oauth", "report-accounts", *args, stdout=out, no_color=True)
    return raised.value, out.getvalue()


def test_dry_run_says_what_it_would_send_and_sends_nothing(fake_atlassian):
    connected_grant(fake_atlassian)
    dead_grants(199)

    out = run("--dry-run")

    assert out.splitlines() == [
        f"App {DEFAULT_CLIENT_ID}: would report 200 accounts in 3 requests (90, 90, 20 accounts)",
        "Dry run: nothing was sent or changed.",
    ]
    assert report_requests(fake_atlassian) == []
    assert not AccountReport.objects.exists()


def test_a_dry_run_of_one_request_names_no_sizes(fake_atlassian):
    connected_grant(fake_atlassian)

    assert run("--dry-run").splitlines()[0] == (
        f"App {DEFAULT_CLIENT_ID}: would report 1 account in 1 request"
    )


def test_a_report_prints_per_app_what_was_sent_and_the_outcome(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    fake_atlassian.close_account(ADA_ACCOUNT_ID)
    tokens = (grant.access_token, grant.refresh_token)
    connected_grant(fake_atlassian, username="grace", account_id="5b10ac8d82e05b22cc7d4ef5")

    out = run()

    first, summary = out.splitlines()
    assert first.startswith(
        f"App {DEFAULT_CLIENT_ID}: reported 2 accounts in 1 request, 1 closed (erased), "
        "0 updated; next report due "
    )
    assert summary == "1 reported, 0 skipped, 0 failed."
    assert not Grant.objects.filter(account_id=ADA_ACCOUNT_ID).exists()
    assert Event.objects.get(kind=Event.Kind.ACCOUNT_CLOSED).actor == Event.Actor.COMMAND
    for token in tokens:
        assert token and token not in out
    assert ADA_ACCOUNT_ID not in out


def test_a_report_not_due_is_skipped_unless_forced(fake_atlassian):
    connected_grant(fake_atlassian)
    run()

    skipped = run()
    dry = run("--dry-run")
    forced = run("--force")

    assert skipped.splitlines()[0].startswith(f"App {DEFAULT_CLIENT_ID}: not due until ")
    assert skipped.splitlines()[0].endswith(" (--force reports it now)")
    assert skipped.splitlines()[1] == "0 reported, 1 skipped, 0 failed."
    assert dry.splitlines()[0].endswith("; would send nothing (--force reports now)")
    assert forced.splitlines()[1] == "1 reported, 0 skipped, 0 failed."
    assert len(report_requests(fake_atlassian)) == 2


def test_a_failed_report_exits_1(fake_atlassian):
    connected_grant(fake_atlassian)
    fake_atlassian.inject("report_accounts", status=429, headers={"Retry-After": "300"})

    error, out = run_failing()

    assert getattr(error, "returncode", None) == 1
    first, summary = out.splitlines()
    assert first.startswith(
        f"App {DEFAULT_CLIENT_ID}: rate limited: /app/report-accounts/ answered 429. "
        "(so far 0 accounts in 0 requests, 0 closed (erased), 0 updated); next report due "
    )
    assert summary == "0 reported, 0 skipped, 1 failed."
    row = AccountReport.objects.get()
    assert row.next_report_at is not None
    assert row.next_report_at > timezone.now() + timedelta(seconds=290)


def test_without_grants(fake_atlassian):
    assert run() == "No grants, so no Atlassian accounts to report.\n"
    assert run("--dry-run") == "No grants, so no Atlassian accounts to report.\n"


def test_the_help_names_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        call_command("atlassian_oauth", "report-accounts", "--help")
    help_text = capsys.readouterr().out
    assert "--dry-run" in help_text
    assert "--force" in help_text
    assert "Exit status: 0 when every report due went through; 1 when one failed" in help_text
