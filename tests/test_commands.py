"""`manage.py atlassian_oauth status | disconnect | generate-key`: thin, clear, never a secret."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.sites.models import Site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db
from django.utils import timezone

from atlassian_oauth import connect, crypto
from atlassian_oauth.models import Connection, Event, Grant

pytestmark = pytest.mark.django_db

ACCESS = "atl-access-plaintext-1f2e3d"
REFRESH = "atl-refresh-plaintext-4c5b6a"


@pytest.fixture
def alpha_and_beta():
    """Two sites of this module's own, so the command's output names them unambiguously."""
    return (
        Site.objects.create(domain="alpha.example", name="Alpha"),
        Site.objects.create(domain="beta.example", name="Beta"),
    )


@pytest.fixture
def users(alice, bob):
    return alice, bob


def make_grant(account: str = "ada", **fields) -> Grant:
    now = timezone.now()
    defaults = {
        "client_id": "client",
        "account_id": f"{account}-account-id",
        "account_email": f"{account}@example.com",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "access_token_expires_at": now + timedelta(minutes=42, seconds=30),
        "consented_at": now,
        "scopes": "read:jira-work offline_access",
    }
    return Grant.objects.create(**{**defaults, **fields})


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("atlassian_oauth", *args, stdout=out, stderr=err, no_color=True)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[CommandError, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("atlassian_oauth", *args, stdout=out, stderr=err, no_color=True)
    return raised.value, out.getvalue(), err.getvalue()


def raw_columns(grant: Grant) -> list[str]:
    with db.cursor() as cursor:
        cursor.execute(
            # The table name comes from the model, not from input.
            f"SELECT access_token, refresh_token FROM {Grant._meta.db_table} WHERE id = %s",  # noqa: S608
            [grant.pk],
        )
        return [value for value in cursor.fetchone() if value]


# status


def test_status_without_connections(alpha_and_beta):
    out, _err = run("status")
    assert out.strip() == "No connections."


def test_status_lists_every_connection_with_its_facts(users, alpha_and_beta):
    alice, bob = users
    grant = make_grant(last_refreshed_at=timezone.now() - timedelta(minutes=3))
    Connection.objects.create(user=alice, site=alpha_and_beta[0], grant=grant)
    Connection.objects.create(user=bob, site=alpha_and_beta[1], grant=make_grant("grace"))

    out, _err = run("status")

    assert f"alice on alpha.example (site {alpha_and_beta[0].pk})" in out
    assert f"bob on beta.example (site {alpha_and_beta[1].pk})" in out
    assert "Atlassian account: ada@example.com (account id ada-account-id)" in out
    assert "Health:            Healthy. Tokens are renewed automatically." in out
    assert "Refresh token:     yes" in out
    assert "(in 42 minutes)" in out
    expires = timezone.localtime(grant.access_token_expires_at).isoformat(timespec="seconds")
    assert f"expires {expires}" in out
    assert "Scopes:            read:jira-work offline_access" in out
    assert "Last refreshed:    never" in out  # grace's
    assert "Next step" not in out and "None" not in out  # healthy: nothing to do, so no line
    assert out.rstrip().endswith("\n2 connections, all healthy.")


def test_status_never_shows_a_token(users, alpha_and_beta):
    grant = make_grant()
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=grant)
    out, err = run("status")
    for secret in [ACCESS, REFRESH, *raw_columns(grant)]:
        assert secret not in out + err


def test_status_tells_a_stored_refresh_token_without_decrypting(
    users, alpha_and_beta, oauth_settings
):
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=make_grant())
    Connection.objects.create(
        user=users[1], site=alpha_and_beta[1], grant=make_grant("grace", refresh_token=None)
    )
    # A key ring that cannot decrypt the stored tokens: status must still work.
    oauth_settings(ENCRYPTION_KEYS=[crypto.generate_key()])
    out, _err = run("status")
    assert "Refresh token:     yes" in out
    assert "Refresh token:     no" in out


def test_status_filters_by_user_and_site(users, alpha_and_beta):
    alice, bob = users
    Connection.objects.create(user=alice, site=alpha_and_beta[0], grant=make_grant())
    Connection.objects.create(user=alice, site=alpha_and_beta[1], grant=make_grant("ada2"))
    Connection.objects.create(user=bob, site=alpha_and_beta[1], grant=make_grant("grace"))

    by_user, _ = run("status", "--user", "alice")
    assert by_user.count("alice on ") == 2 and "bob on" not in by_user

    by_domain, _ = run("status", "--site", "beta.example")
    assert "alice on beta.example" in by_domain and "bob on beta.example" in by_domain
    assert "alpha.example" not in by_domain

    by_id, _ = run("status", "--site", str(alpha_and_beta[0].pk))
    assert "alice on alpha.example" in by_id and "beta.example" not in by_id

    both, _ = run("status", "--user", "bob", "--site", "alpha.example")
    assert both.strip() == "No connections."


def test_status_for_an_unknown_user_fails_clearly(users):
    error, out, _err = run_failing("status", "--user", "mallory")
    assert error.returncode == 1
    assert str(error) == "No user with username 'mallory'. --user takes a username."
    assert out == ""


def test_status_does_not_count_a_token_the_next_sweep_is_about_to_renew(
    users, alpha_and_beta, oauth_settings
):
    """A token 30 s into the refresh margin is beat's next job, not an operator's: a monitor
    running `status` must not flap every hour. Four minutes in, beat is late: it counts."""
    oauth_settings(REFRESH_MARGIN=300)
    now = timezone.now()
    renewing = make_grant(access_token_expires_at=now + timedelta(seconds=270))
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=renewing)

    out, err = run("status")  # no CommandError: exit status 0

    assert err == ""
    assert "Health:            Expiring soon." in out
    assert out.rstrip().endswith("\n1 connection, none needs attention (1 about to be renewed).")

    Grant.objects.filter(pk=renewing.pk).update(access_token_expires_at=now + timedelta(seconds=60))
    error, out, _err = run_failing("status")
    assert error.returncode == 2
    assert str(error) == "1 of 1 connection needs attention (listed above)."


def test_status_for_an_unknown_site_fails_clearly(alpha_and_beta):
    error, _out, _err = run_failing("status", "--site", "nowhere.example")
    assert error.returncode == 1
    assert "No site with domain or id 'nowhere.example'." in str(error)
    assert f"alpha.example (id {alpha_and_beta[0].pk})" in str(error)

    error, _out, _err = run_failing("status", "--site", "99999")
    assert "No site with domain or id '99999'." in str(error)


def test_status_exits_2_when_a_connection_needs_attention(users, alpha_and_beta):
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=make_grant())
    dead = make_grant(
        "grace",
        status=Grant.Status.NEEDS_RECONNECT,
        access_token_expires_at=timezone.now() - timedelta(minutes=5, seconds=30),
        last_error="invalid_grant",
    )
    Connection.objects.create(user=users[1], site=alpha_and_beta[1], grant=dead)

    error, out, err = run_failing("status")

    assert error.returncode == 2
    assert str(error) == "1 of 2 connections needs attention (listed above)."
    assert out.rstrip().endswith("\n1 of 2 connections needs attention (listed above).")
    assert err == ""
    assert "Health:            Needs reconnect. Atlassian refused the refresh token" in out
    assert "Click" not in out  # the page's advice to its user, not an operator's
    assert "(expired 5 minutes ago)" in out
    assert "Last error:        invalid_grant" in out
    assert (
        "Next step:         Ask bob to reconnect on the site's status page "
        "(beta.example/atlassian/), or remove the connection: `python manage.py atlassian_oauth "
        "disconnect --user bob --site beta.example`." in out
    )

    healthy_only, _ = run("status", "--user", "alice")  # exit 0: no exception
    assert healthy_only.rstrip().endswith("\n1 connection, healthy.")


def test_status_names_the_users_email_and_quotes_for_the_shell(users, alpha_and_beta):
    bob = users[1]
    bob.username, bob.email = "bob smith", "bob@example.com"
    bob.save()
    dead = make_grant(status=Grant.Status.NEEDS_RECONNECT)
    Connection.objects.create(user=bob, site=alpha_and_beta[1], grant=dead)

    _error, out, _err = run_failing("status")

    assert "Ask bob smith (bob@example.com) to reconnect" in out
    assert "disconnect --user 'bob smith' --site beta.example`" in out


def test_status_tells_a_configuration_error_to_fix_the_app_then_force(users, alpha_and_beta):
    grant = make_grant(
        refresh_failures=1,
        next_refresh_at=timezone.now() + timedelta(hours=1),
        last_failure=Grant.Failure.CONFIGURATION,
        last_error="configuration: Atlassian's token endpoint answered 401 invalid_client",
    )
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=grant)

    error, out, _err = run_failing("status")

    assert error.returncode == 2
    assert "Health:            Configuration error. Atlassian refused the app's client id" in out
    assert (
        "Next step:         Fix the app's client id or secret (ATLASSIAN_OAUTH in the settings, "
        "or the site's Atlassian app in admin), then run `python manage.py atlassian_oauth "
        "refresh --force --user alice --site alpha.example`." in out
    )
    assert "There is nothing you need to do" not in out  # the user's advice, not an operator's


def test_status_advises_offline_access_when_no_refresh_token_was_sent(users, alpha_and_beta):
    grant = make_grant(refresh_token=None, status=Grant.Status.NO_REFRESH_TOKEN)
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=grant)

    error, out, _err = run_failing("status")

    assert error.returncode == 2
    assert "Refresh token:     no" in out
    assert (
        "Next step:         Add offline_access to the app's scopes (ATLASSIAN_OAUTH in the "
        "settings, or the site's Atlassian app in admin), then ask alice to reconnect on the "
        "site's status page (alpha.example/atlassian/)." in out
    )


def test_status_while_refreshes_fail_says_they_are_retried(users, alpha_and_beta):
    retry_at = timezone.now() + timedelta(minutes=10)
    grant = make_grant(refresh_failures=2, next_refresh_at=retry_at, last_error="HTTP 503")
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=grant)

    error, out, _err = run_failing("status")

    assert error.returncode == 2
    assert "Refresh failing" in out
    assert "Next step" not in out and "None" not in out
    assert (
        "Next attempt:      "
        + timezone.localtime(retry_at).isoformat(timespec="seconds")
        + ", automatically (`python manage.py atlassian_oauth refresh --force --user alice "
        "--site alpha.example` tries now)." in out
    )


# disconnect


def test_disconnect_the_only_connection_deletes_its_grant(users, alpha_and_beta):
    grant = make_grant()
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=grant)

    out, _err = run("disconnect", "--user", "alice")

    assert "Disconnected alice on alpha.example from Atlassian account ada@example.com." in out
    assert "Its tokens were deleted." in out
    assert connect.CONNECTED_APPS_URL in out
    assert not Connection.objects.exists() and not Grant.objects.exists()
    event = Event.objects.get(kind=Event.Kind.DISCONNECTED)
    assert (event.actor, event.user, event.site) == (
        Event.Actor.COMMAND,
        users[0],
        alpha_and_beta[0],
    )
    assert ACCESS not in out and REFRESH not in out


def test_disconnect_with_several_connections_needs_site(users, alpha_and_beta):
    alice = users[0]
    Connection.objects.create(user=alice, site=alpha_and_beta[0], grant=make_grant())
    Connection.objects.create(user=alice, site=alpha_and_beta[1], grant=make_grant("ada2"))

    error, _out, _err = run_failing("disconnect", "--user", "alice")
    assert error.returncode == 1
    assert "connections on 2 sites" in str(error) and "Pass --site" in str(error)
    assert "alpha.example" in str(error) and "beta.example" in str(error)
    assert Connection.objects.count() == 2

    run("disconnect", "--user", "alice", "--site", "beta.example")
    assert list(Connection.objects.values_list("site__domain", flat=True)) == ["alpha.example"]


def test_disconnect_keeps_a_grant_another_connection_uses(users, alpha_and_beta):
    shared = make_grant()
    Connection.objects.create(user=users[0], site=alpha_and_beta[0], grant=shared)
    Connection.objects.create(user=users[1], site=alpha_and_beta[1], grant=shared)

    out, _err = run("disconnect", "--user", "alice", "--site", str(alpha_and_beta[0].pk))

    assert "Its tokens were kept: another connection uses the same Atlassian grant." in out
    assert Grant.objects.get() == shared
    assert Connection.objects.get().user == users[1]


def test_disconnect_an_unknown_user_or_site_or_a_missing_connection(users, alpha_and_beta):
    error, _out, _err = run_failing("disconnect", "--user", "mallory")
    assert "No user with username 'mallory'" in str(error)

    error, _out, _err = run_failing("disconnect", "--user", "alice", "--site", "nowhere")
    assert "No site with domain or id 'nowhere'" in str(error)

    error, _out, _err = run_failing("disconnect", "--user", "alice")
    assert str(error) == "User 'alice' has no connection."

    error, _out, _err = run_failing("disconnect", "--user", "alice", "--site", "alpha.example")
    assert str(error) == "User 'alice' has no connection on alpha.example."


def test_disconnect_requires_user():
    with pytest.raises(CommandError, match="--user"):
        call_command("atlassian_oauth", "disconnect")


# generate-key


def test_generate_key_prints_a_key_crypto_accepts():
    out, err = run("generate-key")
    key = out.strip()
    assert len(out.splitlines()) == 1
    ring = crypto.KeyRing([key])
    assert ring.decrypt(ring.encrypt("x", context="c"), context="c") == "x"
    assert "first in ATLASSIAN_OAUTH['ENCRYPTION_KEYS']" in err
    assert key not in err


def test_generate_key_with_an_id():
    out, _err = run("generate-key", "--key-id", "2026-11")
    assert crypto.KeyRing([out.strip()]).current.key_id == "2026-11"

    error, _out, _err = run_failing("generate-key", "--key-id", "bad id!")
    assert "A key id is" in str(error)


def test_two_keys_differ():
    assert run("generate-key")[0] != run("generate-key")[0]


def test_generate_key_runs_while_the_checks_say_there_is_no_key(oauth_settings):
    from django.core.management.base import SystemCheckError

    oauth_settings(ENCRYPTION_KEYS=[])
    out = StringIO()
    # skip_checks=False: as `manage.py` runs it (call_command skips checks by default).
    call_command(
        "atlassian_oauth", "generate-key", stdout=out, stderr=StringIO(), skip_checks=False
    )
    assert crypto.KeyRing([out.getvalue().strip()])
    with pytest.raises(SystemCheckError, match=r"atlassian_oauth\.E002"):
        call_command("atlassian_oauth", "status", stdout=StringIO(), skip_checks=False)
