"""The fault matrix of docs/atlassian.md's error table, against the fake over real HTTP.

For every row: what ``ensure_fresh`` raises, the grant's resulting state, the event written, the
signal sent, the retry schedule, and that the tokens are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.utils import timezone

from atlassian_oauth import exceptions, refresh
from atlassian_oauth.conf import conf
from atlassian_oauth.exceptions import AtlassianOAuthError
from atlassian_oauth.models import Event, Grant
from atlassian_oauth.refresh import backoff_seconds
from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    REFRESH_REUSE_LEEWAY,
    FakeAtlassian,
)
from tests.refresh_helpers import (
    captured_signals,
    connected_grant,
    expire,
    set_stored_tokens,
    stored_tokens,
)

pytestmark = pytest.mark.django_db

BASE = 30.0  # RETRY_BACKOFF for these tests
RECONNECT_BUTTON = ">Reconnect Jira</button>"
WRONG_SECRET = "wrong-client-secret-3f9c"
# Clock skew between taking "now" in the test and in the app, in seconds.
SLACK = 2.0


@pytest.fixture(autouse=True)
def retry_backoff_of_base(oauth_settings: Any) -> None:
    """RETRY_BACKOFF is BASE; the sites cache holds no site of an earlier test."""
    oauth_settings(RETRY_BACKOFF=BASE)
    Site.objects.clear_cache()


def status_page(client: Any) -> str:
    client.force_login(get_user_model().objects.get(username="alice"))
    response = client.get("/atlassian/", HTTP_HOST="localhost")
    assert response.status_code == 200
    return str(response.content.decode())


def beat(grant_id: int) -> refresh.FreshToken:
    return refresh.ensure_fresh(grant_id, actor=Event.Actor.BEAT)


def fail_transiently(grant_id: int) -> tuple[exceptions.TemporarilyUnavailable, datetime, datetime]:
    """One failing beat refresh: the exception and the wall-clock bounds around the call."""
    before = timezone.now()
    with pytest.raises(exceptions.TemporarilyUnavailable) as caught:
        beat(grant_id)
    return caught.value, before, timezone.now()


# ---- dead grants: 403 invalid_grant / unauthorized_client ----------------------------------


def revoke(fake: FakeAtlassian, grant: Grant) -> None:
    fake.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)


def revoke_unauthorized_client(fake: FakeAtlassian, grant: Grant) -> None:
    fake.invalid_refresh_error = "unauthorized_client"
    fake.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)


def late_reuse(fake: FakeAtlassian, grant: Grant) -> None:
    """A rotated refresh token was not stored; the old one is presented after the leeway."""
    old_refresh = grant.refresh_token
    expire(grant)
    beat(grant.pk)
    assert fake.counts["refresh"] == 1
    set_stored_tokens(grant.pk, refresh_token=old_refresh)
    fake.clock.advance(REFRESH_REUSE_LEEWAY + 60)
    Event.objects.all().delete()


def injected_unauthorized_client(fake: FakeAtlassian, grant: Grant) -> None:
    """Atlassian's "seen in practice" answer, exactly as the table quotes it."""
    fake.inject(
        kind="refresh",
        status=403,
        body={"error": "unauthorized_client", "error_description": "refresh_token is invalid"},
    )


DEAD = {
    "revoked-invalid_grant": (revoke, "invalid_grant"),
    "late-reuse-invalid_grant": (late_reuse, "invalid_grant"),
    "revoked-unauthorized_client": (revoke_unauthorized_client, "unauthorized_client"),
    "injected-unauthorized_client": (injected_unauthorized_client, "unauthorized_client"),
}


@pytest.mark.parametrize("case", list(DEAD), ids=list(DEAD))
def test_a_dead_grant_needs_reconnect_and_is_never_retried(fake_atlassian, client, case):
    make_dead, error_code = DEAD[case]
    grant = connected_grant(fake_atlassian)
    make_dead(fake_atlassian, grant)
    grant.refresh_from_db()
    expire(grant)
    before = stored_tokens(grant.pk)
    refreshes_before = fake_atlassian.counts["refresh"]

    with captured_signals() as calls, pytest.raises(exceptions.ReconnectRequired):
        beat(grant.pk)

    assert fake_atlassian.counts["refresh"] == refreshes_before + 1
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.NEEDS_RECONNECT
    assert error_code in stored.last_error
    assert stored.next_refresh_at is None
    assert stored_tokens(grant.pk) == before
    event = Event.objects.get()
    assert event.kind == Event.Kind.NEEDS_RECONNECT
    assert event.actor == Event.Actor.BEAT and event.grant_id == grant.pk
    assert error_code in event.details["error"]
    assert [name for name, _ in calls] == ["needs_reconnect"]
    kwargs = calls[0][1]
    assert kwargs["sender"] is Grant
    assert kwargs["grant"].pk == grant.pk and kwargs["grant"].status == "needs_reconnect"
    assert error_code in kwargs["error"] and kwargs["actor"] == Event.Actor.BEAT

    # Never retried: not by the beat, not by application code, not with a stale version.
    counts = fake_atlassian.counts
    with captured_signals() as again:
        for actor in (Event.Actor.BEAT, Event.Actor.APPLICATION):
            with pytest.raises(exceptions.ReconnectRequired):
                refresh.ensure_fresh(grant.pk, actor=actor)
        with pytest.raises(exceptions.ReconnectRequired):
            refresh.ensure_fresh(grant.pk, actor=actor, stale_version=stored.version)
    assert fake_atlassian.counts == counts
    assert again == []
    assert Event.objects.count() == 1
    assert stored_tokens(grant.pk) == before

    assert RECONNECT_BUTTON in status_page(client)


# ---- 401 access_denied: a wrong client secret is a configuration error --------------------


def test_a_wrong_client_secret_is_a_configuration_error(
    fake_atlassian, oauth_settings, client, caplog
):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = stored_tokens(grant.pk)
    oauth_settings(CLIENT_SECRET=WRONG_SECRET)

    with captured_signals() as calls:
        error, started, ended = fail_transiently(grant.pk)

    assert (
        fake_atlassian.requests_log[-1]["kind"] == "refresh"
        and fake_atlassian.requests_log[-1]["status"] == 401
    )
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.ACTIVE  # the user is not blamed
    assert "configuration" in stored.last_error.lower()
    assert stored_tokens(grant.pk) == before
    assert stored.refresh_failures == 1
    assert error.retry_after is not None and 3600 - SLACK <= error.retry_after <= 3600 + SLACK
    assert stored.next_refresh_at is not None
    assert started + timedelta(seconds=3600 - SLACK) <= stored.next_refresh_at
    assert stored.next_refresh_at <= ended + timedelta(seconds=3600 + SLACK)
    event = Event.objects.get()
    assert event.kind == Event.Kind.REFRESH_FAILED
    assert event.details["configuration"] is True
    assert [name for name, _ in calls] == ["refresh_failed"]
    assert calls[0][1]["retry_at"] == stored.next_refresh_at
    assert WRONG_SECRET not in str(error) + stored.last_error + json.dumps(event.details)
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in alerts] == ["atlassian_oauth.refresh"]  # for the admins
    assert WRONG_SECRET not in caplog.text
    assert RECONNECT_BUTTON not in status_page(client)

    # The admin fixes the secret; nothing else is needed once the backoff is over.
    oauth_settings(CLIENT_SECRET=DEFAULT_CLIENT_SECRET)
    Grant.objects.filter(pk=grant.pk).update(next_refresh_at=timezone.now())
    assert beat(grant.pk).access_token != before[0]
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.ACTIVE


def test_missing_app_credentials_are_a_configuration_error_without_http(
    fake_atlassian, oauth_settings
):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = stored_tokens(grant.pk)
    oauth_settings(CLIENT_SECRET="")
    error, _, _ = fail_transiently(grant.pk)
    assert fake_atlassian.counts["refresh"] == 0
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.ACTIVE and "configuration" in stored.last_error
    assert error.retry_after is not None and error.retry_after >= 3600 - SLACK
    assert Event.objects.get().details["configuration"] is True
    assert stored_tokens(grant.pk) == before


def test_a_transient_failure_is_not_flagged_as_configuration(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=500)
    fail_transiently(grant.pk)
    assert Event.objects.get().details["configuration"] is False


# ---- transient rows: 429/503 with Retry-After, other 5xx, timeouts, drops, bad bodies -------


@dataclass(frozen=True)
class Transient:
    fault: dict[str, Any]
    retry_after: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


TRANSIENT = {
    "429-retry-after": Transient({"status": 429, "headers": {"Retry-After": "120"}}, 120.0),
    "503-retry-after": Transient({"status": 503, "headers": {"Retry-After": "120"}}, 120.0),
    "500": Transient({"status": 500}),
    "502-html": Transient({"status": 502, "body": "<html><h1>Bad Gateway</h1></html>"}),
    "503-no-retry-after": Transient({"status": 503}),
    "timeout": Transient({"delay": 1.0}, options={"HTTP_TIMEOUT": 0.3}),
    "dropped-connection": Transient({"drop": True}),
    "200-not-json": Transient({"status": 200, "body": "<html>"}),
    "200-without-access-token": Transient(
        {"status": 200, "body": {"token_type": "Bearer", "expires_in": 3600, "scope": "x"}}
    ),
}


def bounds(failures: int, retry_after: float | None) -> tuple[float, float]:
    """Equal jitter: the delay after ``failures`` failures lies in [step/2, step]."""
    step = BASE * 2 ** (failures - 1)
    return max(step / 2, retry_after or 0), max(step, retry_after or 0)


def assert_scheduled(
    grant_id: int,
    error: exceptions.TemporarilyUnavailable,
    started: datetime,
    ended: datetime,
    *,
    failures: int,
    retry_after: float | None,
) -> Grant:
    stored = Grant.objects.get(pk=grant_id)
    low, high = bounds(failures, retry_after)
    assert stored.refresh_failures == failures
    assert error.retry_after is not None and low <= error.retry_after <= high
    assert stored.next_refresh_at is not None
    assert started + timedelta(seconds=low) <= stored.next_refresh_at
    assert stored.next_refresh_at <= ended + timedelta(seconds=high)
    return stored


@pytest.mark.parametrize("case", list(TRANSIENT), ids=list(TRANSIENT))
def test_a_transient_failure_keeps_the_tokens_and_backs_off(
    fake_atlassian, oauth_settings, client, case
):
    row = TRANSIENT[case]
    oauth_settings(**row.options)
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = stored_tokens(grant.pk)
    fake_atlassian.inject(kind="refresh", **row.fault)

    with captured_signals() as calls:
        error, started, ended = fail_transiently(grant.pk)

    assert fake_atlassian.counts["refresh"] == 1
    stored = assert_scheduled(
        grant.pk, error, started, ended, failures=1, retry_after=row.retry_after
    )
    assert stored.next_refresh_at is not None
    if row.retry_after is not None:
        assert stored.next_refresh_at >= started + timedelta(seconds=row.retry_after)
    assert stored.status == Grant.Status.ACTIVE
    assert stored.last_error
    assert stored_tokens(grant.pk) == before
    assert stored.version == grant.version
    assert stored.refresh_lock_token == "" and stored.refresh_lock_until is None
    event = Event.objects.get()
    assert event.kind == Event.Kind.REFRESH_FAILED and event.actor == Event.Actor.BEAT
    assert event.details["failures"] == 1
    assert event.details["retry_at"] == stored.next_refresh_at.isoformat()
    assert event.details["configuration"] is False
    assert [name for name, _ in calls] == ["refresh_failed"]
    kwargs = calls[0][1]
    assert kwargs["sender"] is Grant and kwargs["grant"].pk == grant.pk
    assert kwargs["retry_at"] == stored.next_refresh_at
    assert kwargs["error"] == stored.last_error and kwargs["actor"] == Event.Actor.BEAT
    assert RECONNECT_BUTTON not in status_page(client)


def test_each_failure_schedules_the_next_refresh_from_backoff_seconds(fake_atlassian, monkeypatch):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    before = stored_tokens(grant.pk)
    fake_atlassian.inject(kind="refresh", status=503, headers={"Retry-After": "120"}, times=2)
    delays: list[tuple[int, float | None, float]] = []

    def recorded(failures: int, retry_after: float | None = None) -> float:
        delay = backoff_seconds(failures, retry_after)
        delays.append((failures, retry_after, delay))
        return delay

    monkeypatch.setattr(refresh, "backoff_seconds", recorded)
    for failures in (1, 2):
        Grant.objects.filter(pk=grant.pk).update(next_refresh_at=None)
        error, started, ended = fail_transiently(grant.pk)
        assert delays[-1][:2] == (failures, 120.0)
        delay = delays[-1][2]
        assert error.retry_after == pytest.approx(delay, abs=SLACK)
        stored = Grant.objects.get(pk=grant.pk)
        assert stored.refresh_failures == failures
        assert stored.next_refresh_at is not None
        assert started + timedelta(seconds=delay) <= stored.next_refresh_at
        assert stored.next_refresh_at <= ended + timedelta(seconds=delay)

    assert fake_atlassian.counts["refresh"] == 2
    assert stored_tokens(grant.pk) == before
    events = Event.objects.order_by("pk")
    assert [e.details["failures"] for e in events] == [1, 2]


# ---- backoff_seconds: the arithmetic, without HTTP ------------------------------------------


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5])
def test_the_backoff_doubles_with_each_failure(failures):
    low, high = bounds(failures, None)
    for _ in range(50):
        assert low <= backoff_seconds(failures) <= high


@pytest.mark.parametrize("failures", [1, 2, 5])
def test_the_backoff_is_never_below_retry_after(failures):
    low, high = bounds(failures, 120.0)
    for _ in range(50):
        assert low <= backoff_seconds(failures, 120.0) <= high


def test_the_backoff_is_capped(oauth_settings):
    oauth_settings(RETRY_BACKOFF_MAX=40.0)
    for failures in range(1, 12):
        assert backoff_seconds(failures) <= 40.0


def test_jitter_spreads_the_retries():
    delays = {round(backoff_seconds(1), 3) for _ in range(8)}
    assert all(BASE / 2 <= delay <= BASE for delay in delays)
    assert len(delays) > 1


# ---- while backing off ----------------------------------------------------------------------


def test_in_backoff_the_still_valid_old_token_is_returned_without_http(fake_atlassian):
    grant = connected_grant(fake_atlassian, expires_in=100)  # inside the 300 s margin: due
    assert conf.REFRESH_MARGIN == 300
    fake_atlassian.inject(kind="refresh", status=503, headers={"Retry-After": "120"})
    with pytest.raises(exceptions.TemporarilyUnavailable):
        beat(grant.pk)
    counts = fake_atlassian.counts

    with captured_signals() as calls:
        for actor in (Event.Actor.BEAT, Event.Actor.APPLICATION):
            token = refresh.ensure_fresh(grant.pk, actor=actor)
            assert token.access_token == grant.access_token

    assert fake_atlassian.counts == counts
    assert calls == []
    assert Event.objects.count() == 1
    assert Grant.objects.get(pk=grant.pk).refresh_failures == 1


def test_in_backoff_an_expired_token_raises_without_http(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=503, headers={"Retry-After": "120"})
    with pytest.raises(exceptions.TemporarilyUnavailable):
        beat(grant.pk)
    counts = fake_atlassian.counts

    with captured_signals() as calls, pytest.raises(exceptions.TemporarilyUnavailable) as caught:
        beat(grant.pk)

    assert caught.value.retry_after is not None and 110 <= caught.value.retry_after <= 120
    assert fake_atlassian.counts == counts
    assert calls == []
    assert Event.objects.count() == 1
    assert Grant.objects.get(pk=grant.pk).refresh_failures == 1


def test_a_success_after_failures_clears_the_backoff(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.inject(kind="refresh", status=500, times=2)
    for _ in range(2):
        fail_transiently(grant.pk)
        Grant.objects.filter(pk=grant.pk).update(next_refresh_at=timezone.now())
    assert Grant.objects.get(pk=grant.pk).refresh_failures == 2

    with captured_signals() as calls:
        token = beat(grant.pk)

    stored = Grant.objects.get(pk=grant.pk)
    assert token.access_token == stored.access_token != grant.access_token
    assert stored.refresh_token != grant.refresh_token
    assert stored.refresh_failures == 0
    assert stored.next_refresh_at is None
    assert stored.last_error == ""
    assert stored.status == Grant.Status.ACTIVE
    assert [name for name, _ in calls] == ["refreshed"]
    assert Event.objects.filter(kind=Event.Kind.REFRESHED).count() == 1


# ---- a refresh response without refresh_token -----------------------------------------------


def test_a_response_without_refresh_token_keeps_the_old_one(fake_atlassian):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    fake_atlassian.refresh_omits_refresh_token = True

    with captured_signals() as calls:
        token = beat(grant.pk)

    stored = Grant.objects.get(pk=grant.pk)
    assert token.access_token == stored.access_token != grant.access_token
    assert stored.refresh_token == grant.refresh_token
    assert stored.status == Grant.Status.ACTIVE
    event = Event.objects.get()
    assert event.kind == Event.Kind.REFRESHED and event.details["rotated"] is False
    assert [name for name, _ in calls] == ["refreshed"]

    # The kept token still works: later refreshes present it and succeed.
    expire(grant)
    beat(grant.pk)
    assert Grant.objects.get(pk=grant.pk).refresh_token == grant.refresh_token
    fake_atlassian.refresh_omits_refresh_token = False
    expire(grant)
    beat(grant.pk)
    final = Grant.objects.get(pk=grant.pk)
    assert final.refresh_token != grant.refresh_token
    assert final.status == Grant.Status.ACTIVE
    assert fake_atlassian.counts["refresh"] == 3
    # A refresh that keeps the old refresh token is worth a row; the routine one after is not.
    rotated = [e.details["rotated"] for e in Event.objects.order_by("pk")]
    assert rotated == [False, False]


# ---- every outcome's signal, with its documented arguments ----------------------------------


def outcome_refreshed(fake: FakeAtlassian, grant: Grant) -> type[Exception] | None:
    return None


def outcome_failed(fake: FakeAtlassian, grant: Grant) -> type[Exception] | None:
    fake.inject(kind="refresh", status=503, headers={"Retry-After": "90"})
    return exceptions.TemporarilyUnavailable


def outcome_dead(fake: FakeAtlassian, grant: Grant) -> type[Exception] | None:
    fake.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    return exceptions.ReconnectRequired


OUTCOMES: dict[str, tuple[Callable[..., type[Exception] | None], Event.Kind, set[str]]] = {
    "refreshed": (outcome_refreshed, Event.Kind.REFRESHED, {"sender", "grant", "actor"}),
    "refresh_failed": (
        outcome_failed,
        Event.Kind.REFRESH_FAILED,
        {"sender", "grant", "error", "retry_at", "actor"},
    ),
    "needs_reconnect": (
        outcome_dead,
        Event.Kind.NEEDS_RECONNECT,
        {"sender", "grant", "error", "actor"},
    ),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
@pytest.mark.parametrize("actor", [Event.Actor.BEAT, Event.Actor.APPLICATION])
def test_every_outcome_fires_one_signal_and_each_state_change_writes_one_event(
    fake_atlassian, outcome, actor
):
    arrange, kind, arguments = OUTCOMES[outcome]
    grant = connected_grant(fake_atlassian)
    expire(grant)
    raises = arrange(fake_atlassian, grant)

    with captured_signals() as calls:
        if raises is None:
            refresh.ensure_fresh(grant.pk, actor=actor)
        else:
            with pytest.raises(raises):
                refresh.ensure_fresh(grant.pk, actor=actor)

    assert [name for name, _ in calls] == [outcome]
    kwargs = calls[0][1]
    assert set(kwargs) == arguments
    assert kwargs["sender"] is Grant
    assert isinstance(kwargs["grant"], Grant) and kwargs["grant"].pk == grant.pk
    assert kwargs["actor"] == actor
    if "error" in arguments:
        assert isinstance(kwargs["error"], str) and kwargs["error"]
    if "retry_at" in arguments:
        assert isinstance(kwargs["retry_at"], datetime)
        assert kwargs["retry_at"] >= timezone.now() + timedelta(seconds=90 - SLACK)
    stored = Grant.objects.get(pk=grant.pk)
    # The grant the receivers get is the row as the outcome left it (no second read needed).
    for name in ("version", "status", "refresh_failures", "next_refresh_at", "last_error"):
        assert getattr(kwargs["grant"], name) == getattr(stored, name), name
    assert kwargs["grant"].access_token == stored.access_token
    assert kwargs["grant"].refresh_lock_token == stored.refresh_lock_token == ""
    if outcome == "refreshed":
        # A routine refresh of a healthy grant is no state change: no row (issue 12).
        assert not Event.objects.exists()
        return
    event = Event.objects.get()
    assert event.kind == kind and event.actor == actor
    assert event.grant_id == grant.pk and event.account_id == ADA_ACCOUNT_ID


@pytest.mark.parametrize("actor", [Event.Actor.ADMIN, Event.Actor.COMMAND, Event.Actor.USER])
def test_a_refresh_a_person_asked_for_writes_its_event(fake_atlassian, actor):
    grant = connected_grant(fake_atlassian)
    expire(grant)
    refresh.ensure_fresh(grant.pk, actor=actor)
    event = Event.objects.get()
    assert (event.kind, event.actor, event.grant_id) == (Event.Kind.REFRESHED, actor, grant.pk)


# ---- no secret anywhere ---------------------------------------------------------------------


def test_no_token_or_secret_leaks_into_events_logs_or_errors(
    fake_atlassian, oauth_settings, caplog
):
    caplog.set_level(logging.DEBUG)
    grant = connected_grant(fake_atlassian)
    seen: set[str] = set()
    errors: list[str] = []

    def remember() -> None:
        for token in stored_tokens(grant.pk):
            if token:
                seen.add(token)

    def attempt() -> None:
        remember()
        expire(grant)
        Grant.objects.filter(pk=grant.pk).update(next_refresh_at=None)
        try:
            beat(grant.pk)
        except AtlassianOAuthError as error:
            errors.append(str(error))
            errors.append(repr(error))
            if error.__cause__ is not None:
                errors.append(str(error.__cause__))
        remember()

    attempt()  # refreshed (rotated)
    fake_atlassian.refresh_omits_refresh_token = True
    attempt()  # refreshed (not rotated)
    fake_atlassian.refresh_omits_refresh_token = False
    for fault in TRANSIENT.values():
        oauth_settings(HTTP_TIMEOUT=0.3)
        fake_atlassian.inject(kind="refresh", **fault.fault)
        attempt()
    oauth_settings(CLIENT_SECRET=WRONG_SECRET)
    attempt()  # configuration error
    oauth_settings(CLIENT_SECRET=DEFAULT_CLIENT_SECRET)
    fake_atlassian.revoke_grant(DEFAULT_CLIENT_ID, ADA_ACCOUNT_ID)
    attempt()  # needs reconnect
    attempt()  # refused without HTTP

    assert len(seen) >= 5
    kinds = set(Event.objects.values_list("kind", flat=True))
    assert kinds == {Event.Kind.REFRESHED, Event.Kind.REFRESH_FAILED, Event.Kind.NEEDS_RECONNECT}
    written = [e.message + json.dumps(e.details) for e in Event.objects.all()]
    written.append(Grant.objects.get(pk=grant.pk).last_error)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert logged  # something was logged at all
    for secret in (*seen, DEFAULT_CLIENT_SECRET, WRONG_SECRET):
        assert secret not in logged
        for text in written + errors:
            assert secret not in text
