"""Settings for the Celery worker and beat that tests/test_celery_refresh.py starts.

The test settings, plus a beat that sweeps every second, refresh timings short enough for a
test, and a queue of the test's own (``TEST_CELERY_QUEUE``), so tasks left in a shared Redis by
another run never reach these processes.
"""

import os

from atlassian_oauth.beat import SWEEP_TASK
from tests.settings import *  # noqa: F403
from tests.settings import ATLASSIAN_OAUTH

#: A stored access token becomes due this many seconds before it expires.
REFRESH_MARGIN = 15
BEAT_JITTER = 1

CELERY_BEAT_SCHEDULE = {"sweep": {"task": SWEEP_TASK, "schedule": 1.0}}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("TEST_CELERY_QUEUE", "celery")

ATLASSIAN_OAUTH = {
    **ATLASSIAN_OAUTH,
    "REFRESH_MARGIN": REFRESH_MARGIN,
    "BEAT_JITTER": BEAT_JITTER,
}
