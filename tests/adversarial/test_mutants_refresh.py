"""Tests that kill mutants of atlassian_oauth/refresh.py that `make mutation` found surviving.

- a late "dead grant" answer of a worker whose lease ran out does not mark dead the grant that
  another worker is refreshing (and so cost the user a reconnect);
- marking a grant dead moves its version on once and clears its retry schedule;
- the fallback token (``still_valid_token``) is never a dead grant's, nor an expired one;
- a failure after the row moved on tells the caller to retry at once and logs whose it was;
- a refused refresh is one UPDATE (the lease released in it) and signals the row as stored;
- a failure of another kind restarts the "failing since" time; a long error fits its column;
- backoff spans the upper half of each step (sub-second steps too); a token serves to its last
  second (the fallback, a short-lived one renewed a moment ago, and one that cannot be renewed
  now: no refresh token, backing off, another worker's lease);
- the claim's path without UPDATE ... RETURNING; a dead grant's and a given-up wait's answers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atlassian_oauth import exceptions, refresh
from atlassian_oauth.models import Event, Grant
from tests.helpers import wait_until
from tests.refresh_helpers import captured_signals, connected_grant, expire, set_stored_tokens

DEAD_BODY = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
LEASE = 1.0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("status", "body"), [(403, DEAD_BODY), (503, None)], ids=["invalid_grant", "unavailable"]
)
def test_a_late_refusal_does_not_mark_the_grant_another_worker_refreshes(
    fake_atlassian, oauth_settings, status, body
):
    oauth_settings(REFRESH_LOCK_TIMEOUT=LEASE)
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = Grant.objects.get(pk=grant.pk)
    # The first worker's refresh is refused, but only after its lease has run out; the second
    # worker's refresh succeeds and its answer arrives after that refusal.
    fake_atlassian.inject(kind="refresh", status=status, body=body, delay=2.5)
    fake_atlassian.inject(kind="refresh", delay_after=2.5)
    late: dict[str, Any] = {}

    def first_worker() -> None:
        try:
            late["token"] = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
        except Exception as error:
            late["error"] = error
        finally:
            db_connection.close()

    thread = threading.Thread(target=first_worker, daemon=True)
    thread.start()
    try:
        reached = wait_until(
            lambda: fake_atlassian.counts.get("refresh", 0) == 1, timeout=10, interval=0.02
        )
        assert reached, "the first worker's refresh never reached the fake"
        held = Grant.objects.get(pk=grant.pk)
        assert held.refresh_lock_until is not None
        time.sleep(max(0.0, (held.refresh_lock_until - timezone.now()).total_seconds()) + 0.2)
        assert "token" not in late and "error" not in late, "the refusal came inside the lease"
        second = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    finally:
        thread.join(timeout=15)
    assert not thread.is_alive()

    # The first worker learns its refresh lost, not that the user must reconnect.
    assert isinstance(late.get("error"), exceptions.TemporarilyUnavailable), late
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.ACTIVE, "a stale refusal marked a live grant dead"
    assert stored.version == before.version + 1
    assert stored.access_token == second.access_token
    assert stored.refresh_token != before.refresh_token
    assert stored.refresh_failures == 0 and stored.next_refresh_at is None
    assert not Event.objects.filter(
        kind__in=[Event.Kind.NEEDS_RECONNECT, Event.Kind.REFRESH_FAILED]
    ).exists(), "the stale refusal was logged against the grant"


@pytest.mark.django_db
def test_marking_a_grant_dead_moves_its_version_once_and_clears_its_schedule(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    # A backoff that has just run out: this attempt is allowed, and it is refused for good.
    Grant.objects.filter(pk=grant.pk).update(
        next_refresh_at=timezone.now() - timedelta(seconds=1), refresh_failures=2
    )
    expire(grant)
    before = Grant.objects.get(pk=grant.pk)
    fake_atlassian.inject(kind="refresh", status=403, body=DEAD_BODY)

    with pytest.raises(exceptions.ReconnectRequired):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)

    dead = Grant.objects.get(pk=grant.pk)
    assert dead.status == Grant.Status.NEEDS_RECONNECT
    assert dead.version == before.version + 1
    assert dead.next_refresh_at is None, "a dead grant keeps a retry time"
    assert "invalid_grant" in dead.last_error or "Unknown or invalid" in dead.last_error
    event = Event.objects.get(kind=Event.Kind.NEEDS_RECONNECT)
    assert "reconnect" in event.message and event.details["error"]
    assert dead.refresh_token == before.refresh_token  # nothing to keep, nothing lost


@pytest.mark.django_db
def test_the_fallback_token_is_never_a_dead_or_missing_or_expired_grants(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    fallback = refresh.still_valid_token(grant.pk)
    assert fallback is not None and fallback.access_token == grant.access_token

    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    assert refresh.still_valid_token(grant.pk) is None, "a dead grant's token was handed out"

    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.ACTIVE)
    expire(grant)
    assert refresh.still_valid_token(grant.pk) is None

    assert refresh.still_valid_token(grant.pk + 1000) is None


# ---- the branches that hand out the current token instead of refreshing ----------------------


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.django_db
def test_a_grant_without_a_refresh_token_serves_its_token_until_it_expires(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=120)  # inside REFRESH_MARGIN (300 s)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NO_REFRESH_TOKEN)

    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    assert token.access_token == grant.access_token
    with pytest.raises(exceptions.ReconnectRequired, match="offline_access"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION, stale_version=token.version)
    expire(grant)
    with pytest.raises(exceptions.ReconnectRequired, match="offline_access"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db
def test_a_grant_in_backoff_serves_its_token_while_it_lasts(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=120)
    Grant.objects.filter(pk=grant.pk).update(next_refresh_at=later(30), refresh_failures=1)

    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    assert token.access_token == grant.access_token
    with pytest.raises(exceptions.TemporarilyUnavailable, match="backing off"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION, stale_version=token.version)
    expire(grant)
    with pytest.raises(exceptions.TemporarilyUnavailable, match="backing off") as waiting:
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    assert waiting.value.retry_after is not None and 25 < waiting.value.retry_after <= 30
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db
def test_a_caller_that_waited_out_another_workers_lease_gets_the_current_token(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=120)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_lock_token="another-worker", refresh_lock_until=later(60)
    )

    started = time.monotonic()
    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT, wait=0.3)
    assert token.access_token == grant.access_token
    expire(grant)
    with pytest.raises(exceptions.TemporarilyUnavailable, match="taking too long") as waiting:
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT, wait=0.3)
    assert time.monotonic() - started < 5, "the caller did not stop waiting after `wait`"
    assert waiting.value.retry_after is not None and waiting.value.retry_after > 0
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db
def test_a_claimed_refresh_that_finds_the_work_done_calls_nobody(fake_atlassian):
    """The race ``ensure_fresh`` re-reads for: between its first look and its claim, another
    worker refreshed. Driven one step at a time, as the interleaving is not schedulable."""
    grant = connected_grant(fake_atlassian)  # fresh: another worker just refreshed it
    current = Grant.objects.get(pk=grant.pk)
    for stale_version in (None, current.version - 1):
        lease = refresh._claim(grant.pk)
        assert lease is not None
        token = refresh._refresh_claimed(
            lease, actor=Event.Actor.BEAT, margin=60, stale_version=stale_version
        )
        assert token.access_token == current.access_token
    assert fake_atlassian.counts.get("refresh", 0) == 0
    assert Grant.objects.get(pk=grant.pk).refresh_lock_token == ""


@pytest.mark.django_db
def test_releasing_a_lease_that_ran_out_leaves_the_next_workers_lease(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    first = refresh._claim(grant.pk)
    assert first is not None
    Grant.objects.filter(pk=grant.pk).update(refresh_lock_until=later(-1))  # ran out
    second = refresh._claim(grant.pk)
    assert second is not None and second != first

    refresh._release(grant.pk, first)
    held = Grant.objects.get(pk=grant.pk)
    assert held.refresh_lock_token == second and held.refresh_lock_until is not None
    assert refresh._claim(grant.pk) is None, "a third worker could claim the grant"


@pytest.mark.django_db
def test_a_failed_refresh_is_logged_with_atlassians_answer(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=503)
    with pytest.raises(exceptions.TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    event = Event.objects.get(kind=Event.Kind.REFRESH_FAILED)
    assert event.message.startswith("Refresh failed (1 in a row); retrying in ")
    assert event.details["error"] and event.details["error"] != "None"
    assert event.details["failures"] == 1


# ---- what a failure records, and how often it writes --------------------------------------------


@pytest.mark.django_db
def test_a_failure_after_the_row_moved_on_says_retry_now_and_logs_whose_it_was(
    fake_atlassian, caplog
):
    """Between the claim and Atlassian's answer, a reconnect moved the row on (its token due as
    well): the failure is not recorded, the caller is told to try again at once, and the log
    line names the grant, the actor and Atlassian's answer."""
    grant = connected_grant(fake_atlassian)
    expire(grant)
    lease = refresh._claim(grant.pk)
    assert lease is not None
    Grant.objects.filter(pk=grant.pk).update(version=F("version") + 1)
    fake_atlassian.inject(kind="refresh", status=503)

    with (
        caplog.at_level(logging.INFO, logger="atlassian_oauth.refresh"),
        pytest.raises(exceptions.TemporarilyUnavailable) as raised,
    ):
        refresh._refresh_claimed(lease, actor=Event.Actor.BEAT, margin=60, stale_version=None)

    assert raised.value.retry_after == 0.0, "the caller should retry at once, not wait"
    assert "changed during the refresh" in str(raised.value)
    [line] = [r for r in caplog.records if "changed meanwhile" in r.getMessage()]
    pk, who, actor, error = line.args
    assert pk == grant.pk and str(who) == str(grant) and actor == Event.Actor.BEAT
    assert "503" in str(error)
    assert not Event.objects.filter(kind=Event.Kind.REFRESH_FAILED).exists()


def grant_updates(queries: CaptureQueriesContext) -> list[str]:
    table = Grant._meta.db_table
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith("UPDATE") and table in q["sql"]
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "body", "raised", "signal"),
    [
        (403, DEAD_BODY, exceptions.ReconnectRequired, "needs_reconnect"),
        (503, None, exceptions.TemporarilyUnavailable, "refresh_failed"),
    ],
    ids=["dead", "transient"],
)
def test_a_refused_refresh_writes_the_row_once_and_signals_it_as_stored(
    fake_atlassian, status, body, raised, signal
):
    """The outcome's UPDATE releases the lease too (no second UPDATE), and the signal's grant
    is the row as that write left it (its version included)."""
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(version=7)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=status, body=body)

    with (
        captured_signals() as calls,
        CaptureQueriesContext(db_connection) as queries,
        pytest.raises(raised),
    ):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)

    updates = len(grant_updates(queries))
    assert updates == 2, "the claim and the outcome, and nothing else"
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.refresh_lock_token == "" and stored.refresh_lock_until is None
    [(_name, sent)] = [call for call in calls if call[0] == signal]
    assert sent["grant"].version == stored.version
    assert sent["grant"].status == stored.status
    assert sent["grant"].next_refresh_at == stored.next_refresh_at


@pytest.mark.django_db
def test_a_failure_of_another_kind_restarts_the_failing_since_time(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=503, times=2)
    with pytest.raises(exceptions.TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    first = Grant.objects.get(pk=grant.pk)
    assert first.last_failure == Grant.Failure.TRANSIENT and first.refresh_failures == 1

    # The same kind again: still failing since the first one.
    with pytest.raises(exceptions.TemporarilyUnavailable):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.ADMIN, force=True)
    second = Grant.objects.get(pk=grant.pk)
    assert second.refresh_failures == 2 and second.state_changed_at == first.state_changed_at

    # Now the app's credentials are refused: a new kind of failure, since now.
    fake_atlassian.inject(kind="refresh", status=401, body={"error": "invalid_client"})
    with pytest.raises(exceptions.TemporarilyUnavailable, match="misconfigured"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.ADMIN, force=True)
    third = Grant.objects.get(pk=grant.pk)
    assert third.last_failure == Grant.Failure.CONFIGURATION and third.refresh_failures == 3
    assert third.state_changed_at is not None and second.state_changed_at is not None
    assert third.state_changed_at > second.state_changed_at


@pytest.mark.django_db
def test_a_long_failure_is_stored_cut_to_its_column(fake_atlassian, oauth_settings):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    # A misconfigured AUTH_BASE_URL: the configuration error quotes it, well over 500 characters.
    oauth_settings(AUTH_BASE_URL="ftp://" + "a" * 600)
    with pytest.raises(exceptions.TemporarilyUnavailable, match="misconfigured"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    stored = Grant.objects.get(pk=grant.pk)
    max_length = Grant._meta.get_field("last_error").max_length
    assert len(stored.last_error) == max_length == 500
    assert stored.last_error.startswith("configuration: ")


@pytest.mark.django_db
def test_a_grant_without_an_access_token_asks_for_a_reconnect_and_says_why(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    set_stored_tokens(grant.pk, access_token="")
    with pytest.raises(exceptions.ReconnectRequired, match="no access token"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.APPLICATION)


# ---- backoff, and the last second of a token ----------------------------------------------------


def test_backoff_spreads_over_the_upper_half_of_each_step(oauth_settings):
    """Equal jitter: between half the step and the whole step, over that whole range."""
    oauth_settings(RETRY_BACKOFF=40.0, RETRY_BACKOFF_MAX=3600.0)
    delays = [refresh.backoff_seconds(1) for _ in range(2000)]
    assert all(20.0 <= delay <= 40.0 for delay in delays)
    assert min(delays) < 20.5 and max(delays) > 39.5
    doubled = [refresh.backoff_seconds(2) for _ in range(200)]
    assert all(40.0 <= delay <= 80.0 for delay in doubled)


def test_a_sub_second_backoff_is_honoured(oauth_settings):
    oauth_settings(RETRY_BACKOFF=0.2)
    assert all(0.1 <= refresh.backoff_seconds(1) <= 0.2 for _ in range(200))
    assert refresh.backoff_seconds(1, retry_after=0.0) <= 0.2
    assert refresh.backoff_seconds(1, retry_after=7.0) == 7.0


@pytest.mark.django_db
def test_a_short_lived_token_renewed_a_moment_ago_serves_to_its_last_second(fake_atlassian):
    """A token that lives less than the margin is not renewed again within a minute of its
    renewal, however little of it is left."""
    grant = connected_grant(fake_atlassian, expires_in=120)
    row = Grant.objects.get(pk=grant.pk)
    moment = row.access_token_expires_at - timedelta(seconds=0.5)
    row.last_refreshed_at = moment - timedelta(seconds=10)
    token = refresh.current_token(row, 300, now=moment)
    assert token is not None and token.access_token == grant.access_token
    assert refresh.current_token(row, 300, now=moment + timedelta(seconds=1)) is None


@pytest.mark.django_db
def test_the_fallback_token_serves_to_its_last_second(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    for _attempt in range(5):
        started = time.monotonic()
        Grant.objects.filter(pk=grant.pk).update(
            access_token_expires_at=timezone.now() + timedelta(seconds=0.9)
        )
        fallback = refresh.still_valid_token(grant.pk)
        if time.monotonic() - started < 0.5:  # else the machine stalled: try again
            break
    assert fallback is not None and fallback.access_token == grant.access_token


# ---- the claim where the database cannot update and return in one statement ---------------------


@pytest.mark.django_db
def test_without_update_returning_a_claim_reads_the_row_apart(fake_atlassian, monkeypatch):
    """MySQL and MariaDB: the claim's UPDATE, then the row read apart. A free grant is claimed
    and refreshed; one another worker holds is not (the caller waits, then gives up)."""
    monkeypatch.setattr(refresh, "_updates_return_rows", lambda connection: False)
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = Grant.objects.get(pk=grant.pk)

    token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    stored = Grant.objects.get(pk=grant.pk)
    assert token.renewed and token.access_token == stored.access_token
    assert stored.version == before.version + 1 and stored.refresh_lock_token == ""
    assert fake_atlassian.counts.get("refresh", 0) == 1

    expire(grant)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_lock_token="another-worker", refresh_lock_until=later(60)
    )
    with pytest.raises(exceptions.TemporarilyUnavailable, match="taking too long"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT, wait=0.1)
    assert fake_atlassian.counts.get("refresh", 0) == 1
    assert Grant.objects.get(pk=grant.pk).refresh_lock_token == "another-worker"


@pytest.mark.django_db
def test_a_grant_found_dead_under_the_claim_asks_for_a_reconnect(fake_atlassian):
    """Between the caller's look and its claim, another worker's refresh was refused for good."""
    grant = connected_grant(fake_atlassian)
    expire(grant)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    lease = refresh._claim(grant.pk)
    assert lease is not None
    with pytest.raises(exceptions.ReconnectRequired, match="reconnect"):
        refresh._refresh_claimed(lease, actor=Event.Actor.BEAT, margin=60, stale_version=None)
    assert Grant.objects.get(pk=grant.pk).refresh_lock_token == ""
    assert fake_atlassian.counts.get("refresh", 0) == 0


# ---- ensure_fresh's answers when it does not refresh ---------------------------------------------


@pytest.mark.django_db
def test_a_dead_grant_asks_for_a_reconnect_and_says_why(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    with pytest.raises(exceptions.ReconnectRequired, match="no longer accepts this grant"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NO_REFRESH_TOKEN)
    expire(grant)
    with pytest.raises(exceptions.ReconnectRequired, match="offline_access"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db
def test_a_caller_that_gives_up_waiting_is_told_to_retry_in_a_second(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    Grant.objects.filter(pk=grant.pk).update(
        refresh_lock_token="another-worker", refresh_lock_until=later(60)
    )
    with pytest.raises(exceptions.TemporarilyUnavailable, match="taking too long") as waiting:
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT, wait=0.1)
    assert waiting.value.retry_after == 1.0


def serve_with_under_a_second_left(grant: Grant, **call: Any) -> refresh.FreshToken:
    """ensure_fresh on the grant's token with 0.9 s left (tried again if the machine stalls)."""
    for _attempt in range(5):
        started = time.monotonic()
        Grant.objects.filter(pk=grant.pk).update(
            access_token_expires_at=timezone.now() + timedelta(seconds=0.9)
        )
        try:
            token = refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT, **call)
        except exceptions.AtlassianOAuthError:
            if time.monotonic() - started < 0.5:
                raise
            continue
        if time.monotonic() - started < 0.5:
            return token
    raise AssertionError("the machine stalled on every attempt")


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["no refresh token", "backing off", "another worker"])
def test_a_token_that_cannot_be_renewed_now_serves_to_its_last_second(fake_atlassian, case):
    grant = connected_grant(fake_atlassian)
    call: dict[str, Any] = {}
    if case == "no refresh token":
        Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NO_REFRESH_TOKEN)
    elif case == "backing off":
        Grant.objects.filter(pk=grant.pk).update(next_refresh_at=later(30), refresh_failures=1)
    else:
        Grant.objects.filter(pk=grant.pk).update(
            refresh_lock_token="another-worker", refresh_lock_until=later(60)
        )
        call["wait"] = 0.1
    token = serve_with_under_a_second_left(grant, **call)
    assert token.access_token == grant.access_token and not token.renewed
    assert fake_atlassian.counts.get("refresh", 0) == 0


@pytest.mark.django_db
def test_a_missing_grant_is_named_in_the_error(fake_atlassian):
    """The personal-data reporter shows this text when a grant went meanwhile."""
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).delete()
    with pytest.raises(Grant.DoesNotExist, match=f"Grant {grant.pk} does not exist"):
        refresh.ensure_fresh(grant.pk, actor=Event.Actor.BEAT)


@pytest.mark.django_db
def test_the_claim_is_one_statement_where_the_database_returns_rows_from_an_update(
    fake_atlassian,
):
    """PostgreSQL and SQLite 3.35+ (the suite's databases) claim and read the row back in one
    UPDATE ... RETURNING; only MySQL and MariaDB need the second query."""
    vendor = db_connection.vendor
    if vendor not in ("postgresql", "sqlite") or (
        vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35)
    ):
        pytest.skip(f"{vendor} has no UPDATE ... RETURNING")
    grant = connected_grant(fake_atlassian)
    with CaptureQueriesContext(db_connection) as queries:
        lease = refresh._claim(grant.pk)
    assert lease is not None and lease.grant.pk == grant.pk
    [claim] = [q["sql"] for q in queries.captured_queries]
    assert claim.lstrip().upper().startswith("UPDATE") and "RETURNING" in claim.upper()


@pytest.mark.django_db
@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "update-then-read"])
def test_a_claim_holds_for_the_lock_timeout_and_shuts_out_a_second_claim(
    fake_atlassian, monkeypatch, oauth_settings, returning
):
    """The lease ends REFRESH_LOCK_TIMEOUT from now by the database's clock, not before: a
    second worker cannot claim the grant meanwhile (a lease ending in the past would let two
    workers refresh one rotating token at once)."""
    if returning and not refresh._updates_return_rows(db_connection):
        pytest.skip(f"{db_connection.vendor} has no UPDATE ... RETURNING")
    oauth_settings(REFRESH_LOCK_TIMEOUT=60)
    monkeypatch.setattr(refresh, "_updates_return_rows", lambda connection: returning)
    refresh._statements.clear()
    grant = connected_grant(fake_atlassian)
    before = timezone.now()

    lease = refresh._claim(grant.pk)

    assert lease is not None
    held = Grant.objects.get(pk=grant.pk)
    assert held.refresh_lock_token == str(lease)
    assert held.refresh_lock_until is not None
    assert before + timedelta(seconds=55) < held.refresh_lock_until
    assert held.refresh_lock_until < timezone.now() + timedelta(seconds=65)
    assert refresh._claim(grant.pk) is None  # another worker: shut out
    assert Grant.objects.get(pk=grant.pk).refresh_lock_token == str(lease)


@pytest.mark.django_db
def test_the_stored_token_of_a_dead_grant_is_refused_saying_to_reconnect(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    with pytest.raises(exceptions.ReconnectRequired, match="no longer accepts this grant"):
        refresh.current_token(Grant.objects.get(pk=grant.pk), margin=60)
