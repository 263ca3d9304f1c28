"""Shared fixtures: the fake Atlassian, and the real services some tests need.

A test that needs PostgreSQL, Redis or Chromium skips with the reason when it is missing,
unless REQUIRE_SERVICES=1 (CI), when a missing service fails the test instead.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest
from django.db import connection

pytest_plugins = ["atlassian_oauth.testing.pytest_plugin"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
# The heavy suites (load, faults through a real Celery worker) run once per CI run, in the
# PostgreSQL pass; .ci/run sets RUN_HEAVY=1 there.
RUN_HEAVY = os.environ.get("RUN_HEAVY") == "1"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def service_missing(reason: str) -> NoReturn:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The PostgreSQL-only tests run in .ci/run's PostgreSQL pass, where the default database is
    # PostgreSQL; in the SQLite pass they are not missing a service, they are out of scope.
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs the default database on PostgreSQL (DATABASE_URL=postgres://...)")
    if item.get_closest_marker("heavy") and not RUN_HEAVY:
        pytest.skip("a heavy suite: runs with RUN_HEAVY=1 (the PostgreSQL pass of .ci/run)")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The REDIS_URL of a Redis server that answers PING."""
    import redis

    url = os.environ.get("REDIS_URL", "")
    if not url:
        service_missing("REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379/15)")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        service_missing(f"Redis at REDIS_URL does not answer: {error}")
    return url


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, which Playwright drives (it must not download a browser of its own)."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    service_missing("Chromium is not installed (apt-get install chromium)")
