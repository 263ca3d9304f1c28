"""`manage.py atlassian_oauth refresh [--user] [--site] [--due] [--force] [--dry-run]` against
the fake."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from atlassian_oauth.models import Connection, Event, Grant
from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    GRACE_ACCOUNT_ID,
)
from tests.refresh_helpers import connected_grant, expire

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("atlassian_oauth", "refresh", *args, stdout=out, stderr=out, no_color=True)
    return out.getvalue()


def run_failing(*args: str) -> tuple[CommandError, str]:
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("atlassian_oauth", "refresh", *args, stdout=out, stderr=out, no_color=True)
    return raised.value, out.getvalue()


@pytest.fixture
def two(fake_atlassian):
    """alice (Ada's grant) on localhost, expired; bob (Grace's grant) on beta.example, fresh."""
    ada = connected_grant(fake_atlassian)
    grace = connected_grant(
        fake_atlassian, username="bob", account_id=GRACE_ACCOUNT_ID, domain="beta.example"
    )
    expire(ada)
    return Grant.objects.get(pk=ada.pk), Grant.objects.get(pk=grace.pk)


def versions() -> dict[str, int]:
    return dict(Grant.objects.values_list("account_id", "version"))


def test_a_dry_run_lists_and_calls_nothing(two, fake_atlassian):
    ada, _grace = two
    before, counts = versions(), fake_atlassian.counts
    out = run("--due", "--dry-run")
    assert f"{ADA_ACCOUNT_ID} (grant {ada.pk}; alice on localhost): would refresh\n" in out
    assert GRACE_ACCOUNT_ID not in out  # fresh: not due
    assert "Dry run: 1 would be refreshed, 0 skipped, 0 cannot be; nothing was changed." in out
    out = run("--site", "beta.example", "--dry-run")
    assert (
        f"{GRACE_ACCOUNT_ID} (grant {_grace.pk}; bob on beta.example): would skip (not due)" in out
    )
    assert ADA_ACCOUNT_ID not in out
    assert ": would refresh" in run("--site", "beta.example", "--force", "--dry-run")
    assert fake_atlassian.counts == counts
    assert versions() == before
    assert not Event.objects.exists()


def test_due_refreshes_only_what_the_beat_would(two, fake_atlassian):
    ada, grace = two
    out = run("--due")
    assert out == (
        f"{ADA_ACCOUNT_ID} (grant {ada.pk}; alice on localhost): refreshed\n"
        "1 refreshed, 0 skipped, 0 failed.\n"
    )
    assert fake_atlassian.counts["refresh"] == 1
    assert versions() == {ADA_ACCOUNT_ID: ada.version + 1, GRACE_ACCOUNT_ID: grace.version}
    assert Event.objects.get(kind=Event.Kind.REFRESHED).actor == Event.Actor.COMMAND
    assert run("--due").strip() == "Nothing is due for refresh."


def test_a_grant_not_due_is_skipped_not_done(two, fake_atlassian):
    _ada, grace = two
    out = run("--user", "bob")
    assert out == (
        f"{GRACE_ACCOUNT_ID} (grant {grace.pk}; bob on beta.example): skipped (not due)\n"
        "0 refreshed, 1 skipped, 0 failed.\n"
    )
    assert "done" not in out
    assert fake_atlassian.counts.get("refresh", 0) == 0
    assert versions()[GRACE_ACCOUNT_ID] == grace.version


def test_force_refreshes_even_a_fresh_token(two, fake_atlassian):
    _ada, grace = two
    out = run("--user", "bob", "--force")
    assert GRACE_ACCOUNT_ID in out and ": refreshed" in out
    assert ADA_ACCOUNT_ID not in out
    assert out.endswith("1 refreshed, 0 skipped, 0 failed.\n")
    stored = Grant.objects.get(pk=grace.pk)
    assert stored.version == grace.version + 1
    assert stored.access_token != grace.access_token
    assert fake_atlassian.counts["refresh"] == 1
    for secret in (grace.access_token, grace.refresh_token, stored.access_token):
        assert secret and secret not in out


def test_force_again_a_moment_later_refreshes_again(two, fake_atlassian):
    _ada, grace = two
    run("--user", "bob", "--force")
    # Renewed seconds ago: not due by any rule, and --force refreshes it all the same.
    assert ": refreshed" in run("--user", "bob", "--force")
    assert fake_atlassian.counts["refresh"] == 2
    assert versions()[GRACE_ACCOUNT_ID] == grace.version + 2


def test_force_goes_past_the_backoff_of_a_configuration_error(two, fake_atlassian, oauth_settings):
    ada, _grace = two
    oauth_settings(CLIENT_SECRET="not-the-secret")
    error, out = run_failing("--user", "alice")
    assert error.returncode == 1
    assert ": failed: Refreshing is misconfigured: Atlassian's token endpoint answered 401" in out
    assert (
        "  Next step: Fix the app's client id or secret (ATLASSIAN_OAUTH in the settings, or the "
        "site's Atlassian app in admin), then run `python manage.py atlassian_oauth refresh "
        "--force --user alice --site localhost`.\n" in out
    )
    assert "not-the-secret" not in out
    backing_off = Grant.objects.get(pk=ada.pk)
    assert backing_off.next_refresh_at
    assert backing_off.next_refresh_at > timezone.now() + timedelta(minutes=55)

    oauth_settings(CLIENT_SECRET=DEFAULT_CLIENT_SECRET)  # the admin fixes the secret
    out = run("--user", "alice")  # without --force the backoff holds: no call, exit 0
    assert (
        f"{ADA_ACCOUNT_ID} (grant {ada.pk}; alice on localhost): skipped (backing off after a "
        "failure; --force refreshes it now)\n" in out
    )
    assert "  Last error: configuration: Atlassian's token endpoint answered 401" in out
    assert out.endswith("0 refreshed, 1 skipped, 0 failed.\n")
    assert fake_atlassian.counts["refresh"] == 1
    assert "backing off after a failure until" in run("--user", "alice", "--dry-run")

    out = run("--user", "alice", "--force")
    assert out == (
        f"{ADA_ACCOUNT_ID} (grant {ada.pk}; alice on localhost): refreshed\n"
        "1 refreshed, 0 skipped, 0 failed.\n"
    )
    assert fake_atlassian.counts["refresh"] == 2
    stored = Grant.objects.get(pk=ada.pk)
    assert (stored.next_refresh_at, stored.refresh_failures, stored.version) == (
        None,
        0,
        backing_off.version + 1,
    )


def test_force_never_takes_a_lease_another_worker_holds(two, fake_atlassian, oauth_settings):
    _ada, grace = two
    oauth_settings(REFRESH_WAIT=0.2)
    held_until = timezone.now() + timedelta(seconds=30)
    Grant.objects.filter(pk=grace.pk).update(
        refresh_lock_token="another-worker", refresh_lock_until=held_until
    )
    out = run("--user", "bob", "--force")
    assert out == (
        f"{GRACE_ACCOUNT_ID} (grant {grace.pk}; bob on beta.example): skipped (another worker "
        "is refreshing it)\n0 refreshed, 1 skipped, 0 failed.\n"
    )
    assert fake_atlassian.counts.get("refresh", 0) == 0
    stored = Grant.objects.get(pk=grace.pk)
    assert (stored.refresh_lock_token, stored.version) == ("another-worker", grace.version)


def test_due_and_force_together_are_refused(two, fake_atlassian):
    error, _out = run_failing("--due", "--force")
    assert error.returncode == 1
    assert "not both" in str(error)
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_force_alone_refreshes_every_grant(two, fake_atlassian):
    out = run("--force")
    assert out.count(": refreshed\n") == 2
    assert out.endswith("2 refreshed, 0 skipped, 0 failed.\n")
    assert fake_atlassian.counts["refresh"] == 2


def test_user_and_site_together(two, fake_atlassian):
    assert run("--user", "bob", "--site", "localhost").strip() == "No connections."
    out = run("--user", "alice", "--site", "localhost", "--due")
    assert ADA_ACCOUNT_ID in out and ": refreshed" in out
    assert fake_atlassian.counts["refresh"] == 1


def test_a_grant_shared_by_two_connections_is_refreshed_once(two, fake_atlassian):
    ada, _grace = two
    carol = get_user_model().objects.create_user("carol")
    Connection.objects.create(user=carol, site=Site.objects.get(domain="localhost"), grant=ada)
    out = run("--site", "localhost")
    assert f"(grant {ada.pk}; alice on localhost, carol on localhost): refreshed" in out
    assert out.endswith("1 refreshed, 0 skipped, 0 failed.\n")
    assert fake_atlassian.counts["refresh"] == 1


def test_a_failed_refresh_exits_1(two, fake_atlassian):
    fake_atlassian.inject("refresh", status=503)
    error, out = run_failing("--user", "alice")
    assert error.returncode == 1
    assert str(error) == "0 refreshed, 0 skipped, 1 failed."
    assert ": failed: Refreshing failed: Atlassian's token endpoint answered 503" in out
    assert "  Next attempt: " in out and "`python manage.py atlassian_oauth refresh --force" in out
    assert out.endswith("0 refreshed, 0 skipped, 1 failed.\n")
    assert "done" not in out


def test_a_dead_grant_needs_reconnect_and_exits_1(two, fake_atlassian):
    ada, _grace = two
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    error, out = run_failing("--user", "alice")
    assert error.returncode == 1
    assert (
        f"{ADA_ACCOUNT_ID} (grant {ada.pk}; alice on localhost): failed, needs reconnect: "
        "Atlassian refused the refresh token: Atlassian's token endpoint answered 403 "
        "invalid_grant" in out
    )
    assert (
        "  Next step: Ask alice to reconnect on the site's status page (localhost/atlassian/), "
        "or remove the connection: `python manage.py atlassian_oauth disconnect --user alice "
        "--site localhost`.\n" in out
    )
    assert "Click" not in out
    assert Grant.objects.get(pk=ada.pk).status == Grant.Status.NEEDS_RECONNECT
    # Marked dead: asked again, even forced, the command answers from the row without calling.
    error, out = run_failing("--user", "alice", "--force")
    assert ": failed, needs reconnect: " in out
    assert fake_atlassian.counts["refresh"] == 1
    assert run("--due").strip() == "Nothing is due for refresh."
    assert "Needs reconnect, cannot refresh" in run("--user", "alice", "--dry-run")


def test_a_selection_is_required(two, fake_atlassian):
    error, _out = run_failing()
    assert error.returncode == 1
    assert "--user" in str(error) and "--due" in str(error) and "--force" in str(error)
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_unknown_user_or_site_is_an_error(two):
    error, _out = run_failing("--user", "nobody")
    assert "No user" in str(error)
    error, _out = run_failing("--site", "nowhere.example")
    assert "No site" in str(error)
