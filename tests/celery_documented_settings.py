"""The worker setup docs/celery.md recommends, read from that page, on the Celery test settings.

So the page is what ``tests/test_celery_workers.py`` runs: a change to the documented block is
a change to the test. Each new database connection of the process is logged ("Database
connection opened"), so the test can count them.
"""

import copy
import logging
from typing import Any

from django.db.backends.signals import connection_created

from tests.celery_settings import *  # noqa: F403
from tests.celery_settings import ATLASSIAN_OAUTH, DATABASES
from tests.worker_setup import documented_block

# The block changes DATABASES in place: this module's own copy, not the test settings' dict.
DATABASES = copy.deepcopy(DATABASES)
# The project's own documentation, run as settings.
exec(documented_block(), globals())  # noqa: S102

# Two refreshes per task: more tasks than threads, so connections outlive tasks or not.
ATLASSIAN_OAUTH = {**ATLASSIAN_OAUTH, "SWEEP_BATCH_SIZE": 2}


def _log_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    logging.getLogger("tests.connections").info("Database connection opened")


connection_created.connect(_log_connection, weak=False)
