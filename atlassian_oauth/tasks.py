"""Celery tasks that keep every grant fresh; each is a thin call into ``sweep``.

The app makes no Celery app of its own: ``@shared_task`` binds these to the project's app. Add
the beat entries with one line in settings (see ``atlassian_oauth.beat``)::

    CELERY_BEAT_SCHEDULE = {**ATLASSIAN_OAUTH_BEAT_SCHEDULE, ...}

- ``refresh_due_grants`` (every minute): enqueues the due grants in batches: one
  ``refresh_grants`` task per ``SWEEP_BATCH_SIZE`` grants whose refreshes start within a second
  of each other, with their ids (and the offsets of their starts) as the only arguments,
  spread over ``BEAT_JITTER`` seconds (and ``REFRESH_RATE_LIMIT``).
- ``refresh_grants``: refreshes each grant of its batch if it is still due, one after the other,
  each under its own lease, as ``refresh_grant`` does one.
- ``refresh_grant``: refreshes one grant if it is still due (admin's *Refresh now* sends it).
  Acknowledged late, so a worker that dies mid-task leaves it to be delivered again; a second
  delivery finds the grant fresh and does nothing. A failure is logged (by ``refresh``, naming
  the grant and its account), never retried by Celery: a dead grant waits for its user, and a
  transient failure's retry is scheduled by ``next_refresh_at`` on the grant row, where the next
  sweep sees it. The sweep gives each task time limits from the settings as they are when it
  enqueues (``beat.time_limits``): soft after ``REFRESH_WAIT + 2 * HTTP_TIMEOUT`` per refresh
  plus the batch's spread and some slack, hard a little later; the check
  ``atlassian_oauth.W005`` compares the longest with the broker's visibility timeout.
- ``cleanup`` (daily): deletes old events and expired authorizations in progress.
- ``report_accounts`` (hourly): reports the accounts of each app whose personal data report is
  due (``REPORT_CYCLE``, about weekly) to Atlassian, erases the closed ones and re-reads the
  updated ones (``personal_data``); an app not due costs one query.
- ``sync_resources`` (daily): enqueues one ``sync_grant_resources`` per grant whose Atlassian
  sites were not read for a day, its id the only argument, ``resources.SYNC_SPACING`` seconds
  apart (and at most one a second per worker); each reads accessible-resources with the grant's
  token (through the one refresh path) and stores what it lists (``resources.sync``).

After each refresh task the database connections it used are tidied the way Django tidies them
after a request (``close_old_connections``): one that broke is closed, one is kept as long as
``CONN_MAX_AGE`` says. That only matters with ``CELERY_DB_REUSE_MAX`` set, which keeps Celery
from closing them itself around every task (docs/celery.md: the recommended worker setup).
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connections

from . import resources, sweep
from .beat import (
    BEAT_SCHEDULE,
    CLEANUP_TASK,
    REFRESH_BATCH_TASK,
    REFRESH_TASK,
    SWEEP_TASK,
    SYNC_GRANT_RESOURCES_TASK,
    SYNC_RESOURCES_INTERVAL,
    SYNC_RESOURCES_TASK,
    sync_time_limits,
    time_limits,
)
from .models import Event

__all__ = [
    "BEAT_SCHEDULE",
    "cleanup",
    "refresh_due_grants",
    "refresh_grant",
    "refresh_grants",
    "sync_grant_resources",
    "sync_resources",
]

logger = logging.getLogger(__name__)


@shared_task(name=SWEEP_TASK, ignore_result=True)
def refresh_due_grants() -> int:
    """Enqueue a refresh of every grant due for one, in batches; returns how many grants."""
    return sweep.enqueue_due_batches(_enqueue_batch)


def _enqueue_batch(batch: sweep.Batch) -> None:
    # Ids and numbers only: a token or a model instance would sit in the broker in clear. The
    # time limits are read now, not when this module was imported, so settings apply live.
    soft, hard = time_limits(len(batch.grant_ids), batch.offsets[-1])
    args = (list(batch.grant_ids), list(batch.offsets))
    refresh_grants.apply_async(
        args,
        countdown=batch.countdown,
        soft_time_limit=soft,
        time_limit=hard,
        # Plain numbers: repr() says it all, where Celery's saferepr() of them would cost
        # more than the rest of the message.
        argsrepr=repr(args),
        kwargsrepr="{}",
    )


@shared_task(
    name=REFRESH_BATCH_TASK,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def refresh_grants(grant_ids: list[int], offsets: list[float] | None = None) -> list[str]:
    """Refresh each grant if it is due, none before its offset (seconds after the first); what
    happened to each (``sweep.Result``). Delivered twice, it finds the grants fresh."""
    results: list[str] = []
    try:
        for outcome in sweep.refresh_each(grant_ids, offsets, actor=Event.Actor.BEAT):
            _log_outcome(outcome)
            results.append(outcome.result.value)
    except SoftTimeLimitExceeded:
        # ensure_fresh released its lease on the way out; the next sweep tries the rest again.
        left = grant_ids[len(results) :]
        logger.warning(
            "Refreshes of grants %s took longer than the task's time limit; the next sweep "
            "retries them.",
            ", ".join(str(grant_id) for grant_id in left),
        )
        results += [sweep.Result.FAILED.value] * len(left)
    finally:
        _tidy_connections()
    return results


@shared_task(
    name=REFRESH_TASK,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def refresh_grant(grant_id: int, force: bool = False, actor: str = Event.Actor.BEAT) -> str:
    """Refresh one grant if it is due (``force``: now, as admin's *Refresh now* asks); returns
    what happened (``sweep.Result``)."""
    try:
        outcome = sweep.refresh_if_due(grant_id, actor=Event.Actor(actor), force=force)
    except SoftTimeLimitExceeded:
        # ensure_fresh released its lease on the way out; the next sweep tries again.
        logger.warning(
            "Refresh of grant %s took longer than the task's time limit; the next sweep "
            "retries it.",
            grant_id,
        )
        return sweep.Result.FAILED.value
    finally:
        _tidy_connections()
    _log_outcome(outcome)
    return outcome.result.value


def _tidy_connections() -> None:
    # Django's close_old_connections(), minus connections inside a transaction (a test's, or a
    # caller's that runs the task eagerly): those are not the task's to close.
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _log_outcome(outcome: sweep.Outcome) -> None:
    # refresh.py logs what Atlassian answered (refreshed, failed, needs reconnect); these are
    # the outcomes where the task did not ask it.
    if outcome.result == sweep.Result.BUSY:
        logger.info("Refresh of %s skipped: another worker is refreshing it.", outcome.grant)
    elif outcome.result == sweep.Result.BACKING_OFF:
        logger.info(
            "Refresh of %s skipped: backing off after a failure (%s).",
            outcome.grant,
            outcome.reason or "no error stored",
        )
    elif outcome.result == sweep.Result.GONE:
        logger.info("Refresh of %s skipped: the grant no longer exists.", outcome.grant)
    elif outcome.result == sweep.Result.FRESH:
        logger.debug(
            "Refresh of %s skipped: %s.", outcome.grant, outcome.reason or "not due any more"
        )
    elif outcome.result in (sweep.Result.FAILED, sweep.Result.NEEDS_RECONNECT):
        logger.debug("Refresh of %s: %s", outcome.grant, outcome)


@shared_task(name=CLEANUP_TASK, ignore_result=True)
def cleanup() -> dict[str, int]:
    """Delete events older than ``EVENT_RETENTION`` and expired authorizations; their counts."""
    report = sweep.cleanup()
    logger.info(
        "Deleted %d old events and %d expired authorizations.",
        report.events,
        report.authorization_states,
    )
    return {"events": report.events, "authorization_states": report.authorization_states}


@shared_task(name=SYNC_RESOURCES_TASK, ignore_result=True)
def sync_resources() -> int:
    """Enqueue a read of the Atlassian sites of every grant due for one (daily); how many."""
    count = resources.enqueue_due(_enqueue_sync)
    logger.info("Enqueued %d reads of grants' Atlassian sites.", count)
    return count


def _enqueue_sync(grant_id: int, countdown: float) -> None:
    # The id only, as for refreshes. A read not started within half a day after its turn is
    # dropped: tomorrow's run enqueues it again, rather than a pile of them at once.
    soft, hard = sync_time_limits()
    sync_grant_resources.apply_async(
        (grant_id,),
        countdown=countdown,
        expires=countdown + SYNC_RESOURCES_INTERVAL / 2,
        soft_time_limit=soft,
        time_limit=hard,
    )


@shared_task(
    name=SYNC_GRANT_RESOURCES_TASK,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Per worker, on top of the countdowns' spacing: a worker that was down does not run the
    # reads it missed all at once when it comes back.
    rate_limit="1/s",
)
def sync_grant_resources(grant_id: int) -> str:
    """Read one grant's Atlassian sites again and store them (``resources.sync``). Delivered
    twice, it finds them read and does nothing."""
    try:
        outcome = resources.sync(grant_id, actor=Event.Actor.BEAT)
    except SoftTimeLimitExceeded:
        logger.warning(
            "Reading the Atlassian sites of grant %s took longer than the task's time limit; "
            "tomorrow's sync tries again.",
            grant_id,
        )
        return resources.SyncResult.FAILED.value
    return outcome.result.value


# The name is beat.REPORT_TASK (a test holds them equal).
@shared_task(name="atlassian_oauth.tasks.report_accounts", ignore_result=True)
def report_accounts() -> dict[str, int]:
    """Report the accounts of every app whose personal data report is due; how many apps were
    reported, skipped (not due, another run busy) and failed (``personal_data`` logs each)."""
    # Imported on use: a worker loads the reporting service with its first report only.
    from . import personal_data

    return personal_data.tally(personal_data.report_due(actor=Event.Actor.BEAT))
