"""`manage.py atlassian_oauth refresh [--user] [--site] [--due] [--dry-run]` against the fake."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import CommandError

from atlassian_oauth.models import Connection, Event, Grant
from atlassian_oauth.testing import ADA_ACCOUNT_ID, DEFAULT_CLIENT_ID, GRACE_ACCOUNT_ID
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
    assert "Dry run: 1 grant would be refreshed; nothing was changed." in out
    out = run("--site", "beta.example", "--dry-run")
    assert GRACE_ACCOUNT_ID in out and ADA_ACCOUNT_ID not in out
    assert fake_atlassian.counts == counts
    assert versions() == before
    assert not Event.objects.exists()


def test_due_refreshes_only_what_the_beat_would(two, fake_atlassian):
    ada, grace = two
    out = run("--due")
    assert f"{ADA_ACCOUNT_ID} (grant {ada.pk}; alice on localhost): refreshed" in out
    assert GRACE_ACCOUNT_ID not in out
    assert "1 grant: 1 done, 0 not refreshed." in out
    assert fake_atlassian.counts["refresh"] == 1
    assert versions() == {ADA_ACCOUNT_ID: ada.version + 1, GRACE_ACCOUNT_ID: grace.version}
    assert Event.objects.get(kind=Event.Kind.REFRESHED).actor == Event.Actor.COMMAND
    assert run("--due").strip() == "Nothing to refresh."


def test_user_refreshes_even_a_fresh_token(two, fake_atlassian):
    _ada, grace = two
    out = run("--user", "bob")
    assert GRACE_ACCOUNT_ID in out and ": refreshed" in out
    assert ADA_ACCOUNT_ID not in out
    stored = Grant.objects.get(pk=grace.pk)
    assert stored.version == grace.version + 1
    assert stored.access_token != grace.access_token
    assert fake_atlassian.counts["refresh"] == 1
    for secret in (grace.access_token, grace.refresh_token, stored.access_token):
        assert secret and secret not in out


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
    assert fake_atlassian.counts["refresh"] == 1


def test_a_failed_refresh_exits_1(two, fake_atlassian):
    fake_atlassian.inject("refresh", status=503)
    error, out = run_failing("--user", "alice")
    assert error.returncode == 1
    assert ": failed (Refreshing failed:" in out
    assert "1 grant: 0 done, 1 not refreshed." in out


def test_a_dead_grant_needs_reconnect_and_exits_1(two, fake_atlassian):
    ada, _grace = two
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    error, out = run_failing("--user", "alice")
    assert error.returncode == 1
    assert ": needs reconnect (" in out
    assert Grant.objects.get(pk=ada.pk).status == Grant.Status.NEEDS_RECONNECT
    # Marked dead: asked again, the command answers from the row without calling Atlassian.
    error, out = run_failing("--user", "alice")
    assert ": needs reconnect (" in out
    assert fake_atlassian.counts["refresh"] == 1
    assert run("--due").strip() == "Nothing to refresh."
    assert "Needs reconnect, cannot refresh" in run("--user", "alice", "--dry-run")


def test_a_selection_is_required(two, fake_atlassian):
    error, _out = run_failing()
    assert error.returncode == 1
    assert "--user" in str(error) and "--due" in str(error)
    assert fake_atlassian.counts.get("refresh", 0) == 0


def test_unknown_user_or_site_is_an_error(two):
    error, _out = run_failing("--user", "nobody")
    assert "No user" in str(error)
    error, _out = run_failing("--site", "nowhere.example")
    assert "No site" in str(error)
