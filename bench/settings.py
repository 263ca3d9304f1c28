"""Settings for the bench's own processes (the suite, its Celery workers and beats).

The test settings, on the database named by ``BENCH_DATABASE_URL``, Redis from ``REDIS_URL``
with a queue of the run's own (``BENCH_QUEUE``), the fake Atlassian at ``BENCH_FAKE_URL``, and
the worker setup the run is comparing (``BENCH_DOCUMENTED``: docs/celery.md's block; or
``BENCH_DB_REUSE_MAX``, ``BENCH_CONN_MAX_AGE``, ``BENCH_DB_POOL``,
``BENCH_BROKER_MAX_CONNECTIONS``).
"""

import os

import environ

from tests.settings import *  # noqa: F403
from tests.settings import ATLASSIAN_OAUTH

DEBUG = False

DATABASES = {"default": environ.Env.db_url_config(os.environ["BENCH_DATABASE_URL"])}
_database = DATABASES["default"]
_age = os.environ.get("BENCH_CONN_MAX_AGE", "0")
_database["CONN_MAX_AGE"] = None if _age == "none" else int(_age)
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database.setdefault("OPTIONS", {})["timeout"] = 30
if os.environ.get("BENCH_DB_POOL") and "postgresql" in _database["ENGINE"]:
    _database.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": int(os.environ["BENCH_DB_POOL"]),
    }

_fake = os.environ.get("BENCH_FAKE_URL", "http://127.0.0.1:1")
ATLASSIAN_OAUTH = {
    **ATLASSIAN_OAUTH,
    "CLIENT_ID": "fake-client-id",
    "CLIENT_SECRET": "fake-client-secret",
    "AUTH_BASE_URL": _fake,
    "API_BASE_URL": _fake,
    # The throughput rows enqueue everything at once: no spreading over half a minute.
    "BEAT_JITTER": float(os.environ.get("BENCH_BEAT_JITTER", "0.001")),
}

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if os.environ.get("BENCH_BROKER_MAX_CONNECTIONS"):
    CELERY_BROKER_TRANSPORT_OPTIONS["max_connections"] = int(
        os.environ["BENCH_BROKER_MAX_CONNECTIONS"]
    )
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("BENCH_QUEUE", "atlassian-oauth-bench")
CELERY_BEAT_SCHEDULE = {}
CELERY_TASK_IGNORE_RESULT = True
if os.environ.get("BENCH_DB_REUSE_MAX"):
    CELERY_DB_REUSE_MAX = int(os.environ["BENCH_DB_REUSE_MAX"])

if os.environ.get("BENCH_DOCUMENTED"):
    # The worker setup docs/celery.md recommends, as the page has it.
    import re
    from pathlib import Path

    _doc = (Path(__file__).resolve().parent.parent / "docs" / "celery.md").read_text()
    _block = re.search(r"## The recommended setup\n.*?```python\n(.*?)```", _doc, re.DOTALL)
    if _block is None:
        raise RuntimeError("docs/celery.md has no python block under 'The recommended setup'")
    exec(_block.group(1))  # noqa: S102  (the project's own documentation, as settings)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # INFO, as a production worker logs (one line per refresh is part of its cost).
    "root": {"handlers": ["console"], "level": os.environ.get("BENCH_LOG_LEVEL", "WARNING")},
}

# Django's test client (the admin and callback rows) calls itself "testserver".
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
