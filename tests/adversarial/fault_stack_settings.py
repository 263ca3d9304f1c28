"""Settings for the Celery worker and beat of tests/adversarial/test_fault_stack.py.

``tests.celery_settings`` (a sweep every second, the test's own queue), with every refresh timing
shortened so a failed refresh is retried within seconds, and the worker's PostgreSQL sessions
named (``application_name``) so the test can terminate exactly those and nobody else's.
"""

import os

from atlassian_oauth.beat import SWEEP_TASK
from tests.celery_settings import *  # noqa: F403
from tests.celery_settings import ATLASSIAN_OAUTH, DATABASES

#: The name the test's pg_terminate_backend() looks for.
APPLICATION_NAME = os.environ.get("FAULT_STACK_APPLICATION_NAME", "atlassian-oauth-fault-stack")

#: Seconds; the test withholds answers for less than this, and "slow" means longer than this.
HTTP_TIMEOUT = 3.0
#: Longer than one HTTP call can take (connect + read, each within HTTP_TIMEOUT), so a live
#: worker never loses its lease mid-call; short enough that a killed worker's lease runs out fast.
REFRESH_LOCK_TIMEOUT = 7.0
#: A stored token is due this long before it expires. The test makes grants due by moving their
#: stored expiry to within this margin but still ahead, so application code can use the token
#: throughout (the fake's tokens live an hour: they are never due by themselves).
REFRESH_MARGIN = 600

ATLASSIAN_OAUTH = {
    **ATLASSIAN_OAUTH,
    "REFRESH_MARGIN": REFRESH_MARGIN,
    "HTTP_TIMEOUT": HTTP_TIMEOUT,
    "REFRESH_LOCK_TIMEOUT": REFRESH_LOCK_TIMEOUT,
    # A task that finds another worker's lease gives up quickly; the next sweep tries again.
    "REFRESH_WAIT": 1.0,
    "RETRY_BACKOFF": 0.5,
    "RETRY_BACKOFF_MAX": 2.0,
    "BEAT_JITTER": 0.5,
}

# Only sweeps that run on time: a worker restarted after a kill must not find a pile of them.
CELERY_BEAT_SCHEDULE = {"sweep": {"task": SWEEP_TASK, "schedule": 1.0, "options": {"expires": 2}}}
# One task at a time per pool process, so due refreshes wait in Redis, where a restart hits them.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Copies, not in place: the test process imports this module for its constants, and its own
# connection must not carry the name it terminates.
DATABASES = {
    **DATABASES,
    "default": {
        **DATABASES["default"],
        "OPTIONS": {
            **DATABASES["default"].get("OPTIONS", {}),
            "application_name": APPLICATION_NAME,
        },
    },
}
