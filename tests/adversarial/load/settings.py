"""Settings for the web server and the Celery worker that tests/adversarial/test_load.py starts.

The test settings, plus a queue of the run's own (``LOAD_CELERY_QUEUE``), so tasks that another
run left in a shared Redis never reach this worker; no beat (the test sends the one sweep
itself); and a sweep that spreads its refreshes over ``LOAD_STORM_SPREAD`` seconds, so the
storm overlaps the load instead of ending before the users arrive.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import ATLASSIAN_OAUTH

CELERY_TASK_DEFAULT_QUEUE = os.environ["LOAD_CELERY_QUEUE"]
CELERY_BEAT_SCHEDULE = {}

ATLASSIAN_OAUTH = {
    **ATLASSIAN_OAUTH,
    "BEAT_JITTER": float(os.environ.get("LOAD_STORM_SPREAD", "10")),
}
