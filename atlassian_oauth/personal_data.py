"""Atlassian's personal data reporting: report the accounts the app holds data of, erase the
closed ones, read the updated ones again.

Atlassian asks every app that stores personal data of Atlassian accounts (here: each grant's
account id, name and email, from ``/me``) to report the account ids it holds, with when it last
read each one's data (``updatedAt``), about once a week, at most 90 accounts per request. Each
app (client id) reports the accounts of its own grants with an access token of one of them; when
Atlassian refuses that token (401) the next grant's is tried. Atlassian answers per account:

- ``closed``: the account is gone. Every grant of it (of any app: an account id is
  Atlassian-wide) loses its tokens, then its connections (each sends ``disconnected``) and the
  grant itself; its name and email are removed from the event log (the rows stay, marked
  ``erased_at``); one ``account_closed`` event and signal tell integrators to erase their copies.
- ``updated``: ``/me`` is read again with the grant's token, and the new name and email stored.

A complete report is due again ``REPORT_CYCLE`` later (or after Atlassian's ``Cycle-Period``
header); one cut short (429, a failure) resumes after the last account it reported, once
``Retry-After`` (or a backoff) has passed. Each app's ``AccountReport`` row records the last run
and holds a lease, so two beats, or a beat and the command, never report one app at once.
Logs name the app's client id, counts and outcomes: never a token, a name or an email.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, models, transaction
from django.utils import timezone

from . import client, connect, refresh
from .conf import conf
from .events import emit
from .exceptions import AtlassianOAuthError
from .models import AccountReport, Connection, Event, Grant

logger = logging.getLogger(__name__)

BATCH_SIZE = client.REPORT_BATCH_SIZE
#: Grants whose access tokens one run tries before it gives up (each refused, or unobtainable).
MAX_TOKEN_TRIES = 5
#: Seconds of validity a token must have left to be sent.
TOKEN_MARGIN = 60.0
#: How long a run's claim on an app lasts if its worker dies holding it (renewed per request).
CLAIM_TIMEOUT = timedelta(minutes=30)
#: After a failure without ``Retry-After`` the next attempt waits this long, doubling per
#: failure up to ``MAX_FAILURE_BACKOFF``.
FAILURE_BACKOFF = 3600.0
MAX_FAILURE_BACKOFF = 86400.0
#: What an erased name or email becomes in the event log.
ERASED = "[erased]"


class Result(enum.StrEnum):
    """What one run did for one app (the first four are ``AccountReport.Outcome``'s)."""

    REPORTED = "reported"
    RATE_LIMITED = "rate_limited"
    NO_TOKEN = "no_token"  # noqa: S105  (not a secret)
    FAILED = "failed"
    NOT_DUE = "not_due"
    #: Another run (a beat, the command) is reporting this app right now.
    BUSY = "busy"
    #: The app's last grant went meanwhile (an erasure in another app's report, a disconnect).
    NO_ACCOUNTS = "no_accounts"


#: Results that are not a failure (the command's exit status, the task's log level).
FINE = frozenset({Result.REPORTED, Result.NOT_DUE, Result.BUSY, Result.NO_ACCOUNTS})


@dataclass
class AppRun:
    """One app's run: what was sent, what Atlassian said, what was done."""

    client_id: str
    result: Result
    accounts: int = 0
    requests: int = 0
    closed: int = 0
    updated: int = 0
    #: Accounts Atlassian said were updated whose profile could not be read (tried next cycle).
    update_failed: int = 0
    error: str = ""
    next_report_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.result in FINE and not self.update_failed

    @property
    def kind(self) -> str:
        """What the command counts this run as: reported, skipped (not due, busy) or failed."""
        if not self.ok:
            return "failed"
        return "reported" if self.result == Result.REPORTED else "skipped"

    def __str__(self) -> str:
        if self.result == Result.NOT_DUE:
            return "not due" + (
                f" until {_iso(self.next_report_at)}" if self.next_report_at else ""
            )
        if self.result == Result.BUSY:
            return "skipped: another run is reporting this app"
        if self.result == Result.NO_ACCOUNTS:
            return "skipped: it holds no accounts any more"
        done = (
            f"{_count(self.accounts, 'account')} in {_count(self.requests, 'request')}, "
            f"{self.closed} closed (erased), {self.updated} updated"
        )
        if self.update_failed:
            done += f", {self.update_failed} updated profile(s) not read (tried next cycle)"
        if self.result == Result.REPORTED:
            text = f"reported {done}"
        else:
            text = f"{self.result.value.replace('_', ' ')}: {self.error} (so far {done})"
        if self.next_report_at:
            text += f"; next report due {_iso(self.next_report_at)}"
        return text


@dataclass(frozen=True)
class Plan:
    """What a run of one app would send now (``--dry-run``), without calling Atlassian."""

    client_id: str
    #: The number of accounts of each request a run would send now.
    batches: tuple[int, ...]
    due: bool
    next_report_at: datetime | None
    #: A report cut short goes on after the last account it reported.
    resumes: bool

    @property
    def accounts(self) -> int:
        return sum(self.batches)


# ---- what is reported ------------------------------------------------------------------------


def client_ids() -> list[str]:
    """Every app (client id) that holds grants, so has accounts to report."""
    return sorted(set(Grant.objects.values_list("client_id", flat=True)))


def reported_accounts(client_id: str, *, after: str = "") -> list[client.ReportedAccount]:
    """The app's accounts in account id order (those after ``after``), each with when its name
    and email were last read: at the consent, or when a report last had them re-read."""
    rows = (
        Grant.objects.filter(client_id=client_id, account_id__gt=after)
        .order_by("account_id")
        .values_list("account_id", "consented_at", "profile_updated_at")
    )
    return [
        client.ReportedAccount(account_id, max(consented, read or consented))
        for account_id, consented, read in rows
    ]


def batches(accounts: Sequence[client.ReportedAccount]) -> list[Sequence[client.ReportedAccount]]:
    return [accounts[start : start + BATCH_SIZE] for start in range(0, len(accounts), BATCH_SIZE)]


def is_due(report: AccountReport | None, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return report is None or report.next_report_at is None or report.next_report_at <= now


def plans(now: datetime | None = None) -> list[Plan]:
    """Per app with grants: what its run would send now, and whether it is due."""
    now = now or timezone.now()
    reports = {r.client_id: r for r in AccountReport.objects.filter(client_id__in=client_ids())}
    found = []
    for client_id in client_ids():
        report = reports.get(client_id)
        after = report.resume_after if report else ""
        found.append(
            Plan(
                client_id=client_id,
                batches=tuple(len(b) for b in batches(reported_accounts(client_id, after=after))),
                due=is_due(report, now),
                next_report_at=report.next_report_at if report else None,
                resumes=bool(after),
            )
        )
    return found


# ---- reporting -------------------------------------------------------------------------------


def tally(runs: Sequence[AppRun]) -> dict[str, int]:
    """How many runs reported, were skipped and failed."""
    counts = {"reported": 0, "skipped": 0, "failed": 0}
    for run in runs:
        counts[run.kind] += 1
    return counts


def report_due(*, actor: Event.Actor, force: bool = False) -> list[AppRun]:
    """Report every app whose report is due (``force``: every app, now); one run per app."""
    return [report_app(client_id, actor=actor, force=force) for client_id in client_ids()]


def report_app(client_id: str, *, actor: Event.Actor, force: bool = False) -> AppRun:
    """Report the app's accounts if due (``force``: now) and act on Atlassian's answer."""
    if not Grant.objects.filter(client_id=client_id).exists():
        return AppRun(client_id, Result.NO_ACCOUNTS)
    if not _claim(client_id):
        return AppRun(client_id, Result.BUSY)
    row = AccountReport.objects.get(client_id=client_id)
    if not force and not is_due(row):
        _release(row)
        return AppRun(client_id, Result.NOT_DUE, next_report_at=row.next_report_at)
    try:
        run = _run(row, actor=actor)
    finally:
        _release(row)
    log = logger.info if run.ok else logger.warning
    log("Personal data report of app %s [%s]: %s.", client_id, actor, run)
    return run


def _run(row: AccountReport, *, actor: Event.Actor) -> AppRun:
    started = timezone.now()
    run = AppRun(row.client_id, Result.REPORTED)
    tokens = _Tokens(row.client_id, actor=actor)
    cycle_period: int | None = None
    failure: tuple[Result, str, float | None] | None = None
    try:
        for batch in batches(reported_accounts(row.client_id, after=row.resume_after)):
            answer = _send(batch, tokens)
            run.requests += 1
            run.accounts += len(batch)
            cycle_period = answer.cycle_period or cycle_period
            _apply(answer, row.client_id, run, actor=actor)
            tokens.forget_erased()
            # Progress is kept per request: a run cut short later goes on from here.
            row.resume_after = batch[-1].account_id
            _save(row, run, resume_after=row.resume_after)
    except _NoToken as error:
        failure = (Result.NO_TOKEN, str(error), None)
    except client.TransientError as error:
        limited = error.status == 429
        failure = (Result.RATE_LIMITED if limited else Result.FAILED, str(error), error.retry_after)
    except (client.AtlassianError, DatabaseError) as error:
        failure = (Result.FAILED, _safe(error), None)
    now = timezone.now()
    if failure is None:
        row.cycle_period = cycle_period
        period = cycle_period or conf.REPORT_CYCLE
        run.next_report_at = started + timedelta(seconds=period)
        _save(
            row,
            run,
            outcome=AccountReport.Outcome.REPORTED,
            reported_at=now,
            next_report_at=run.next_report_at,
            failures=0,
            error="",
            resume_after="",
            cycle_period=cycle_period,
        )
        return run
    run.result, run.error, retry_after = failure
    failures = row.failures + 1
    delay = min(MAX_FAILURE_BACKOFF, FAILURE_BACKOFF * 2.0 ** (failures - 1))
    # Atlassian's Retry-After is obeyed as it is; the backoff only when it sent none.
    run.next_report_at = now + timedelta(seconds=delay if retry_after is None else retry_after)
    _save(
        row,
        run,
        outcome=AccountReport.Outcome(run.result.value),
        next_report_at=run.next_report_at,
        failures=failures,
        error=run.error[:500],
    )
    return run


def _send(batch: Sequence[client.ReportedAccount], tokens: _Tokens) -> client.ReportAnswer:
    while True:
        access_token = tokens.current()
        try:
            return client.report_accounts(access_token, batch)
        except client.AccessTokenRefused:
            # Atlassian's guide: on a 401, use another user's token.
            tokens.refused()


def _apply(answer: client.ReportAnswer, client_id: str, run: AppRun, *, actor: Event.Actor) -> None:
    for account_id, status in answer.statuses.items():
        if status == "closed":
            erase_account(account_id, client_id=client_id, actor=actor)
            run.closed += 1
        elif status == "updated":
            if reread_profile(client_id, account_id, actor=actor):
                run.updated += 1
            else:
                run.update_failed += 1


def _save(row: AccountReport, run: AppRun, **changes: Any) -> None:
    """Write the run's counts and ``changes``; renew the claim while it goes on."""
    changes = {
        "last_run_at": timezone.now(),
        "accounts": run.accounts,
        "requests": run.requests,
        "closed": run.closed,
        "updated": run.updated,
        "claimed_until": timezone.now() + CLAIM_TIMEOUT,
        **changes,
    }
    AccountReport.objects.filter(pk=row.pk).update(**changes)
    for name, value in changes.items():
        setattr(row, name, value)


def _claim(client_id: str) -> bool:
    """Take the app's lease (a compare-and-swap UPDATE, atomic on every database)."""
    if not AccountReport.objects.filter(client_id=client_id).exists():
        try:
            with transaction.atomic():
                AccountReport.objects.create(client_id=client_id)
        except IntegrityError:
            pass  # another run made it first; the claim below decides between us
    now = timezone.now()
    free = models.Q(claimed_until__isnull=True) | models.Q(claimed_until__lt=now)
    claimed = AccountReport.objects.filter(free, client_id=client_id)
    return claimed.update(claimed_until=now + CLAIM_TIMEOUT) == 1


def _release(row: AccountReport) -> None:
    AccountReport.objects.filter(pk=row.pk).update(claimed_until=None)


class _NoToken(Exception):
    """No grant of the app has an access token Atlassian accepts."""


class _Tokens:
    """The app's access tokens, one grant at a time, freshest first; a refused one is dropped
    and the next grant's tried, at most ``MAX_TOKEN_TRIES`` grants per run."""

    def __init__(self, client_id: str, *, actor: Event.Actor) -> None:
        self.client_id = client_id
        self.actor = actor
        self.tries = 0
        self.grant_id: int | None = None
        self._token: refresh.FreshToken | None = None
        self._candidates = self._grants()
        self._last_problem = "it has no grant that can hold a valid access token"

    def _grants(self) -> Iterator[int]:
        usable = Grant.objects.filter(client_id=self.client_id).exclude(
            status=Grant.Status.NEEDS_RECONNECT
        )
        # The freshest tokens first: most likely valid without a refresh.
        yield from usable.order_by("-access_token_expires_at", "pk").values_list("pk", flat=True)

    def current(self) -> str:
        while self._token is None or not self._token.valid_for(TOKEN_MARGIN):
            self._token = None
            grant_id = next(self._candidates, None)
            if grant_id is None or self.tries >= MAX_TOKEN_TRIES:
                raise _NoToken(
                    f"No access token of app {self.client_id} was accepted "
                    f"({_count(self.tries, 'grant')} tried; {self._last_problem})."
                )
            self.tries += 1
            try:
                self._token = refresh.ensure_fresh(
                    grant_id, actor=self.actor, margin=TOKEN_MARGIN, wait=0
                )
            except (AtlassianOAuthError, Grant.DoesNotExist, ImproperlyConfigured) as error:
                self._last_problem = f"the last: {_safe(error)}"
                continue
            self.grant_id = grant_id
        return self._token.access_token

    def refused(self) -> None:
        self._token = None
        self._last_problem = "the last was refused (401)"

    def forget_erased(self) -> None:
        """Never send a token of a grant that was just erased (its account was closed)."""
        if self.grant_id is not None and not Grant.objects.filter(pk=self.grant_id).exists():
            self._token = self.grant_id = None


# ---- closed: erase ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    grants: int
    connections: int
    events: int


@transaction.atomic
def erase_account(account_id: str, *, client_id: str, actor: Event.Actor) -> Erasure:
    """Erase what the app holds of a closed Atlassian account, in every app: tokens first, then
    connections and grants; its name and email in the event log. Sends ``account_closed``."""
    grants = list(Grant.objects.select_for_update().filter(account_id=account_id))
    grant_ids = [grant.pk for grant in grants]
    texts = {t for grant in grants for t in (grant.account_name, grant.account_email) if t}
    # The secrets go first: nothing of them survives even where a delete leaves traces.
    Grant.objects.filter(pk__in=grant_ids).update(
        access_token=None, refresh_token=None, account_name="", account_email=""
    )
    connections = list(
        Connection.objects.filter(grant__in=grant_ids).select_related("user", "site")
    )
    users: list[AbstractBaseUser] = []
    for connection in connections:
        if connection.user not in users:
            users.append(connection.user)
        connect.disconnect(connection, actor=actor)
    # A grant no connection used is deleted here (the others went with their last connection).
    Grant.objects.filter(pk__in=grant_ids).delete()
    events = _erase_events(account_id, texts)
    _erase_admin_log(grant_ids)
    logger.info(
        "Erased a closed Atlassian account reported by app %s [%s]: %d grant(s), "
        "%d connection(s), %d event(s).",
        client_id,
        actor,
        len(grant_ids),
        len(connections),
        events,
    )
    emit(
        Event.Kind.ACCOUNT_CLOSED,
        actor=actor,
        account_id=account_id,
        message=(
            # No account id: the row has it, and this text is logged too.
            "Atlassian reported the account closed: erased its "
            f"{_count(len(grant_ids), 'grant')}, {_count(len(connections), 'connection')} "
            f"and its name and email in {_count(events, 'event')}"
        ),
        details={
            "client_id": client_id,
            "grants": len(grant_ids),
            "connections": len(connections),
            "events": events,
        },
        arguments={"account_id": account_id, "client_id": client_id, "users": users},
    )
    return Erasure(grants=len(grant_ids), connections=len(connections), events=events)


def _erase_events(account_id: str, texts: set[str]) -> int:
    """Remove ``texts`` (the account's name and email) from its events; mark every one erased."""
    pattern = (
        re.compile(
            "|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in sorted(texts, key=len, reverse=True)),
            re.IGNORECASE,
        )
        if texts
        else None
    )
    now = timezone.now()
    events = list(Event.objects.filter(account_id=account_id, erased_at__isnull=True))
    for event in events:
        if pattern is not None:
            event.message = pattern.sub(ERASED, event.message)
            event.details = _scrubbed(event.details, pattern)
        event.erased_at = now
    Event.objects.bulk_update(events, ["message", "details", "erased_at"], batch_size=500)
    return len(events)


def _scrubbed(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, dict):
        return {key: _scrubbed(item, pattern) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, pattern) for item in value]
    return value


def _erase_admin_log(grant_ids: list[int]) -> None:
    """Django admin's history names a grant by its ``str()``, the account's email."""
    if not grant_ids or not apps.is_installed("django.contrib.admin"):
        return
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Grant),
        object_id__in=[str(pk) for pk in grant_ids],
    ).update(object_repr=ERASED)


# ---- updated: read the profile again ---------------------------------------------------------


def reread_profile(client_id: str, account_id: str, *, actor: Event.Actor) -> bool:
    """Read ``/me`` again with the app's grant of the account and store the name and email;
    False when it could not be read (the next report says "updated" again)."""
    grant = Grant.objects.filter(client_id=client_id, account_id=account_id).first()
    if grant is None:
        return False
    try:
        token = refresh.ensure_fresh(grant.pk, actor=actor, margin=TOKEN_MARGIN, wait=0)
        profile = client.me(token.access_token)
    except (AtlassianOAuthError, client.AtlassianError, Grant.DoesNotExist, ImproperlyConfigured):
        return False
    if profile.account_id != account_id:
        logger.warning(
            "Personal data report of app %s: /me with grant %s's token answered another "
            "account; its profile was not changed.",
            client_id,
            grant.pk,
        )
        return False
    Grant.objects.filter(pk=grant.pk).update(
        account_name=profile.name, account_email=profile.email, profile_updated_at=timezone.now()
    )
    return True


# ---- wording ---------------------------------------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _safe(error: BaseException) -> str:
    """An error's text for the log and the report row: the app's own errors are safe to show;
    a database error may quote values, so only its class is kept."""
    if isinstance(error, DatabaseError):
        return f"database error ({type(error).__name__})"
    return str(error)
