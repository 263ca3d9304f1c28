"""What the beat and the ``refresh`` command do: find grants due for refresh, refresh one grant,
and clean up old rows. The Celery tasks and the command are thin calls into these functions.

A grant is due when its access token expires within ``REFRESH_MARGIN``, or when its refresh
token is older than ``KEEPALIVE_AFTER`` (Atlassian lets an unused refresh token die after 90
days) and nothing refreshed it since. Grants that need reconnecting, have no refresh token, or
are backing off after a failure are never due: refresh.py schedules their retry in
``next_refresh_at``. Refreshing twice is harmless: the second call finds the grant fresh.
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sites.models import Site
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from . import exceptions, refresh
from .beat import SWEEP_INTERVAL
from .conf import conf
from .models import AuthorizationState, Event, Grant, Heartbeat, keepalive_is_due

logger = logging.getLogger(__name__)

#: ``enqueue(grant_id, countdown)`` puts one refresh of the grant on the queue.
Enqueue = Callable[[int, float], None]


@dataclass(frozen=True)
class Batch:
    """Refreshes that one task runs one after the other, each grant under its own lease."""

    grant_ids: tuple[int, ...]
    #: Seconds from now until the first may start (the task's countdown).
    countdown: float
    #: When each may start, in seconds after the first (0.0 for the first): the jitter and
    #: ``REFRESH_RATE_LIMIT`` spacing the sweep chose, kept within the batch.
    offsets: tuple[float, ...]


#: ``enqueue(batch)`` puts one task refreshing the batch's grants on the queue.
EnqueueBatch = Callable[[Batch], None]

#: Grants whose refreshes should start within this many seconds of the batch's first share
#: its task (and at most ``SWEEP_BATCH_SIZE`` of them): a batch never holds back a refresh
#: for longer than this, and a rate limit slower than its size per window yields batches of
#: one, as the limit leaves nothing to save.
BATCH_WINDOW = 1.0


def due_grants(now: datetime | None = None) -> QuerySet[Grant]:
    """The grants the beat should refresh now (``Grant.objects.due``)."""
    return Grant.objects.due(now)


def due_for_enqueue(now: datetime, limit: int | None = None) -> list[tuple[int, datetime]]:
    """``(grant id, access token expiry)`` of the due grants, most urgent first, at most
    ``limit``: the expiring and the idle ones in two queries, each served by its index, merged
    here. (Their OR in one query makes SQLite read every active row; and no server-side
    cursor: PostgreSQL plans one for its first rows, walking every active grant.)"""
    columns = ("pk", "access_token_expires_at")
    expiring = Grant.objects.due_expiring(now).values_list(*columns)
    if limit is not None:
        expiring = expiring[:limit]
    # Unordered in SQL: ordered by expiry, SQLite walks the expiry index over every active
    # grant rather than the keep-alive index's range. There are few (a refresh renews the
    # refresh token too), and every one of them expires after every expiring grant.
    idle = sorted(Grant.objects.due_idle(now).order_by().values_list(*columns), key=_expiry)
    return list(islice(heapq.merge(list(expiring), idle, key=_expiry), limit))


def _expiry(row: tuple[int, datetime]) -> datetime:
    return row[1]


def sweep_limit() -> int | None:
    """How many refreshes one sweep may enqueue: what ``REFRESH_RATE_LIMIT`` lets start before
    the next sweep (None: no limit). The next sweep takes the rest, most urgent first."""
    rate = conf.REFRESH_RATE_LIMIT
    return None if rate is None else math.ceil(rate * SWEEP_INTERVAL)


@dataclass(frozen=True)
class _Spread:
    """The settings ``countdown`` reads, read once per sweep rather than once per grant."""

    jitter: float
    rate: float | None
    http_timeout: float

    @classmethod
    def now(cls) -> _Spread:
        return cls(conf.BEAT_JITTER, conf.REFRESH_RATE_LIMIT, conf.HTTP_TIMEOUT)


def countdown(
    index: int, expires_at: datetime, now: datetime, spread: _Spread | None = None
) -> float:
    """When to run the refresh of the ``index``-th most urgent due grant, in seconds from now.

    A random jitter below ``BEAT_JITTER``; with ``REFRESH_RATE_LIMIT`` r, no earlier than
    index / r (one beat enqueues everything, so this limits the whole deployment). Never later
    than keeps the refresh ahead of the token's expiry, while that is still possible: the rate
    limit yields then.
    """
    spread = spread or _Spread.now()
    jitter, rate = spread.jitter, spread.rate
    if rate is None:
        delay = random.uniform(0, jitter)  # noqa: S311  (spreading load, not secrets)
    else:
        # Jitter within the grant's slot keeps the spacing close to 1 / r.
        delay = index / rate + random.uniform(0, min(jitter, 1 / rate))  # noqa: S311
    left = (expires_at - now).total_seconds()
    if left > 0:
        # Leave the refresh its HTTP timeout before the token dies.
        delay = min(delay, max(0.0, left - spread.http_timeout))
    return delay


#: The heartbeat the sweep leaves, so admins can see whether the beat runs.
SWEEP_HEARTBEAT = "sweep"


def _planned(now: datetime | None) -> list[tuple[int, float]]:
    """Leave the heartbeat; ``(grant id, countdown)`` of each due grant, most urgent first."""
    now = now or timezone.now()
    # One UPDATE in the common case (update_or_create is a transaction of two statements).
    if not Heartbeat.objects.filter(name=SWEEP_HEARTBEAT).update(at=now):
        Heartbeat.objects.update_or_create(name=SWEEP_HEARTBEAT, defaults={"at": now})
    due = due_for_enqueue(now, sweep_limit())
    spread = _Spread.now()
    planned = [
        (grant_id, countdown(index, expires_at, now, spread))
        for index, (grant_id, expires_at) in enumerate(due)
    ]
    if planned:
        logger.info("%s", enqueued_message([grant_id for grant_id, _ in planned]))
    return planned


def enqueue_due(enqueue: Enqueue, now: datetime | None = None) -> int:
    """Enqueue one refresh per due grant, passing its id only; returns how many were enqueued."""
    planned = _planned(now)
    for grant_id, delay in planned:
        enqueue(grant_id, delay)
    return len(planned)


def enqueue_due_batches(enqueue: EnqueueBatch, now: datetime | None = None) -> int:
    """Enqueue the refreshes of the due grants in batches (``batches``), passing ids only;
    returns how many grants were enqueued. What the beat's sweep does: one message per batch
    instead of one per grant."""
    planned = _planned(now)
    for batch in batches(planned, conf.SWEEP_BATCH_SIZE):
        enqueue(batch)
    return len(planned)


def batches(planned: Sequence[tuple[int, float]], size: int) -> list[Batch]:
    """``(grant id, countdown)`` pairs grouped, in the order of their countdowns, into batches
    of at most ``size`` that start within ``BATCH_WINDOW`` seconds of their first."""
    result: list[Batch] = []
    ids: list[int] = []
    delays: list[float] = []
    for grant_id, delay in sorted(planned, key=lambda item: item[1]):
        if ids and (len(ids) >= size or delay - delays[0] >= BATCH_WINDOW):
            result.append(_batch(ids, delays))
            ids, delays = [], []
        ids.append(grant_id)
        delays.append(delay)
    if ids:
        result.append(_batch(ids, delays))
    return result


def _batch(ids: list[int], delays: list[float]) -> Batch:
    start = delays[0]
    return Batch(tuple(ids), start, tuple(round(delay - start, 3) for delay in delays))


def refresh_each(
    grant_ids: Sequence[int],
    offsets: Sequence[float] | None = None,
    *,
    actor: Event.Actor,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Outcome]:
    """``refresh_if_due`` each grant in turn, none before its offset (seconds after the first
    started); the outcomes as they come."""
    started = time.monotonic()
    for index, grant_id in enumerate(grant_ids):
        wait = started + (offsets[index] if offsets else 0.0) - time.monotonic()
        if wait > 0:
            sleep(wait)
        yield refresh_if_due(grant_id, actor=actor)


#: Grants named in the sweep's log line, at most (the count is always exact).
LOGGED_IDS = 20


def enqueued_message(grant_ids: list[int]) -> str:
    """``Enqueued 1 refresh (grant 12).`` / ``Enqueued 3 refreshes (grants 12, 13, 15).``: plain
    English, as logs are not translated."""
    count = len(grant_ids)
    ids = ", ".join(str(pk) for pk in grant_ids[:LOGGED_IDS])
    if count > LOGGED_IDS:
        ids += f" and {count - LOGGED_IDS} more"
    if count == 1:
        return f"Enqueued 1 refresh (grant {ids})."
    return f"Enqueued {count} refreshes (grants {ids})."


class Result(enum.StrEnum):
    REFRESHED = "refreshed"
    #: Not due (or renewed meanwhile by another worker, which ``Outcome.reason`` then says).
    FRESH = "still fresh"
    #: Another worker held the grant's lease for longer than ``REFRESH_WAIT``.
    BUSY = "another worker is refreshing it"
    #: Not tried: a failure scheduled the next attempt later (``next_refresh_at``).
    BACKING_OFF = "backing off"
    FAILED = "failed"
    NEEDS_RECONNECT = "needs reconnect"
    GONE = "gone"


#: ``Outcome.reason`` of a grant whose refresh another worker finished while this one waited.
REFRESHED_ELSEWHERE = "another worker refreshed it"


@dataclass(frozen=True)
class Outcome:
    grant_id: int
    result: Result
    #: Why it failed or needs reconnecting; never a secret.
    reason: str = ""
    #: The grant's account as ``str(grant)`` shows it (email, else name, else account id).
    account: str = ""

    def __str__(self) -> str:
        return f"{self.result} ({self.reason})" if self.reason else str(self.result)

    @property
    def grant(self) -> str:
        """``grant 12 (ada@example.com)``, for log lines."""
        return (
            f"grant {self.grant_id} ({self.account})" if self.account else f"grant {self.grant_id}"
        )


def refresh_if_due(
    grant_id: int, *, actor: Event.Actor, force: bool = False, now: datetime | None = None
) -> Outcome:
    """Refresh one grant if it is due, through ``refresh.ensure_fresh``; ``force``: now,
    even when not due or backing off after a failure (never two refreshes at once all the same).

    Safe to call twice, or for a grant deleted since: the second call finds the grant fresh
    and calls nothing. Never raises for a dead, failing or deleted grant: the outcome says so.
    """
    now = now or timezone.now()
    # The whole row, read once (ensure_fresh starts from it); the sweep's keep-alive rule for
    # it in Python (models.keepalive_is_due).
    seen = refresh.read_grant(grant_id)
    if seen is None:
        return Outcome(grant_id, Result.GONE)
    version = seen.version
    account = str(seen)
    expiring = seen.access_token_expires_at <= now + timedelta(seconds=conf.REFRESH_MARGIN)
    idle = keepalive_is_due(seen, now)
    try:
        if force:
            token = refresh.ensure_fresh(
                grant_id, actor=actor, stale_version=version, force=True, grant=seen
            )
        elif idle and not expiring:
            # The access token is fresh, so the margin would not refresh it: "refresh unless
            # someone already moved past this version" does, exactly once.
            token = refresh.ensure_fresh(grant_id, actor=actor, stale_version=version, grant=seen)
        else:
            token = refresh.ensure_fresh(
                grant_id, actor=actor, margin=conf.REFRESH_MARGIN, grant=seen
            )
    except exceptions.ReconnectRequired as error:
        return Outcome(grant_id, Result.NEEDS_RECONNECT, str(error), account)
    except exceptions.TemporarilyUnavailable as error:
        # A cause is what Atlassian answered this call; without one, nothing was tried.
        untried = None if error.__cause__ is not None else _why_untried(grant_id)
        if untried is not None:
            return Outcome(grant_id, untried[0], untried[1], account)
        return Outcome(grant_id, Result.FAILED, str(error), account)
    except Grant.DoesNotExist:
        return Outcome(grant_id, Result.GONE, account=account)
    if token.renewed:
        return Outcome(grant_id, Result.REFRESHED, account=account)
    # Not renewed by this call: not due, or another worker's refresh this one waited for.
    reason = REFRESHED_ELSEWHERE if token.version != version else ""
    return Outcome(grant_id, Result.FRESH, reason, account)


def _why_untried(grant_id: int) -> tuple[Result, str] | None:
    """Why ensure_fresh gave up without asking Atlassian, with the reason to show: BUSY while
    another worker holds the lease (ours is released before it raises), BACKING_OFF (and the
    failure's stored error) while a failure's wait lasts; None when neither holds."""
    row = (
        Grant.objects.filter(pk=grant_id)
        .annotate(
            leased=ExpressionWrapper(Q(refresh_lock_until__gt=Now()), output_field=BooleanField()),
            waiting=ExpressionWrapper(Q(next_refresh_at__gt=Now()), output_field=BooleanField()),
        )
        .values("leased", "waiting", "last_error")
        .first()
    )
    if row is None:
        return None
    if row["leased"]:
        return Result.BUSY, ""
    if row["waiting"]:
        return Result.BACKING_OFF, row["last_error"]
    return None


def select_grants(
    *,
    user: AbstractBaseUser | None = None,
    site: Site | None = None,
    due: bool = False,
    now: datetime | None = None,
) -> list[Grant]:
    """The grants of the connections of ``user`` and/or on ``site`` (every grant when neither),
    only those due for refresh when ``due``; with their connections prefetched."""
    grants = due_grants(now) if due else Grant.objects.order_by("access_token_expires_at", "pk")
    if user is not None:
        grants = grants.filter(connections__user=user.pk)
    if site is not None:
        grants = grants.filter(connections__site=site)
    return list(grants.distinct().prefetch_related("connections__user", "connections__site"))


@dataclass(frozen=True)
class CleanupReport:
    events: int
    authorization_states: int


def cleanup(now: datetime | None = None) -> CleanupReport:
    """Delete events older than ``EVENT_RETENTION`` and authorizations that have expired."""
    now = now or timezone.now()
    events, _ = Event.objects.filter(
        created_at__lt=now - timedelta(seconds=conf.EVENT_RETENTION)
    ).delete()
    states, _ = AuthorizationState.objects.filter(expires_at__lt=now).delete()
    return CleanupReport(events=events, authorization_states=states)
