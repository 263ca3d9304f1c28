"""The Celery beat entries that keep every connection's tokens fresh, importable from settings.

Add them to your project's beat schedule with one line in ``settings.py``::

    from atlassian_oauth.beat import BEAT_SCHEDULE as ATLASSIAN_OAUTH_BEAT_SCHEDULE

    CELERY_BEAT_SCHEDULE = {**ATLASSIAN_OAUTH_BEAT_SCHEDULE}  # plus your own entries

This module imports neither Celery nor the app's models, so a settings module may import it.
The check ``atlassian_oauth.W004`` warns when the sweep's entry is missing.
"""

from __future__ import annotations

from typing import Any

SWEEP_TASK = "atlassian_oauth.tasks.refresh_due_grants"
REFRESH_TASK = "atlassian_oauth.tasks.refresh_grant"
#: What the sweep enqueues: one task refreshing a batch of grants, each under its own lease.
REFRESH_BATCH_TASK = "atlassian_oauth.tasks.refresh_grants"
CLEANUP_TASK = "atlassian_oauth.tasks.cleanup"
REPORT_TASK = "atlassian_oauth.tasks.report_accounts"

#: Seconds between sweeps. With ``REFRESH_RATE_LIMIT`` one sweep enqueues only what the limit
#: lets run before the next sweep, which picks up the rest, most urgent first.
SWEEP_INTERVAL = 60.0
CLEANUP_INTERVAL = 86400.0
#: The personal data report runs hourly but reports an app only when its cycle is over
#: (``REPORT_CYCLE``, about weekly, or Atlassian's ``Cycle-Period``) or a rate limit's
#: ``Retry-After`` has passed: a restarted beat never reports early, a failure waits no week.
REPORT_INTERVAL = 3600.0

#: A refresh task's soft time limit is ``REFRESH_WAIT + 2 * HTTP_TIMEOUT`` per refresh (waiting
#: for another worker's refresh, then connecting and reading, each bounded by the timeout), plus
#: the batch's spread, plus this, for the database work; the hard limit adds this again so the
#: soft limit's cleanup can finish.
TIME_LIMIT_SLACK = 10.0
#: The longest a batch spreads its refreshes (``sweep.BATCH_WINDOW``).
BATCH_SPREAD = 1.0

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "atlassian-oauth-refresh-due-grants": {
        "task": SWEEP_TASK,
        "schedule": SWEEP_INTERVAL,
        # A sweep nobody ran in time is replaced by the next one, not run late in a pile.
        "options": {"expires": SWEEP_INTERVAL},
    },
    "atlassian-oauth-cleanup": {
        "task": CLEANUP_TASK,
        "schedule": CLEANUP_INTERVAL,
        "options": {"expires": CLEANUP_INTERVAL / 2},
    },
    "atlassian-oauth-report-accounts": {
        "task": REPORT_TASK,
        "schedule": REPORT_INTERVAL,
        "options": {"expires": REPORT_INTERVAL / 2},
    },
}


def time_limits(refreshes: int = 1, spread: float = 0.0) -> tuple[float, float]:
    """``(soft, hard)`` time limits in seconds for a task of ``refreshes`` refreshes whose starts
    spread over ``spread`` seconds (a batch), from the current settings."""
    from .conf import conf

    soft = spread + refreshes * (conf.REFRESH_WAIT + 2 * conf.HTTP_TIMEOUT) + TIME_LIMIT_SLACK
    return soft, soft + TIME_LIMIT_SLACK


def longest_time_limits() -> tuple[float, float]:
    """The time limits of the longest task the sweep sends: a full batch."""
    from .conf import conf

    return time_limits(conf.SWEEP_BATCH_SIZE, BATCH_SPREAD)


#: The daily read of every grant's Atlassian sites (``resources.sync``): it enqueues one
#: ``SYNC_GRANT_RESOURCES_TASK`` per grant, ``resources.SYNC_SPACING`` seconds apart.
SYNC_RESOURCES_TASK = "atlassian_oauth.tasks.sync_resources"
SYNC_GRANT_RESOURCES_TASK = "atlassian_oauth.tasks.sync_grant_resources"
SYNC_RESOURCES_INTERVAL = 86400.0

BEAT_SCHEDULE["atlassian-oauth-sync-resources"] = {
    "task": SYNC_RESOURCES_TASK,
    "schedule": SYNC_RESOURCES_INTERVAL,
    "options": {"expires": SYNC_RESOURCES_INTERVAL / 2},
}


def sync_time_limits() -> tuple[float, float]:
    """``(soft, hard)`` time limits of one grant's read of its sites: a refresh's, plus two
    reads of accessible-resources (a 401 renews the token and reads again)."""
    from .conf import conf

    soft, hard = time_limits()
    extra = 2 * 2 * conf.HTTP_TIMEOUT
    return soft + extra, hard + extra
