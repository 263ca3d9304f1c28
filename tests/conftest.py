"""Shared fixtures: settings, keys, sites and users, the fake Atlassian, and real services.

One name per thing, for every test module:

- ``oauth_settings(**overrides)`` updates ``settings.ATLASSIAN_OAUTH`` for the test;
  ``use_keys(*keys)`` sets its ``ENCRYPTION_KEYS`` (each test passes the keys it starts from).
- ``sites`` are the two tenants (``localhost``, ``127.0.0.1``); ``alice`` and ``bob`` are plain
  users, ``alice_client`` is pytest-django's ``client`` logged in as alice. For a superuser use
  pytest-django's ``admin_user`` / ``admin_client``. The demo's ``seed()`` is for the tests of the
  demo itself only.
- The fake Atlassian is the plugin's ``fake_atlassian``; ``accepting`` is the same fake with
  consent given at once.

A test that needs PostgreSQL, Redis or Chromium skips with the reason when it is missing,
unless REQUIRE_SERVICES=1 (CI), when a missing service fails the test instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest
from django.contrib.auth.models import User
from django.contrib.sites.models import Site
from django.db import connection
from django.test import Client

from atlassian_oauth.testing import FakeAtlassian

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


# ---- settings and keys ----------------------------------------------------------------------


@pytest.fixture
def oauth_settings(settings: Any) -> Callable[..., dict[str, Any]]:
    """``oauth_settings(**overrides)``: update ``settings.ATLASSIAN_OAUTH``; return the new dict.

    Built on pytest-django's ``settings``, so the test's changes are undone after it.
    """

    def update(**overrides: Any) -> dict[str, Any]:
        settings.ATLASSIAN_OAUTH = {**settings.ATLASSIAN_OAUTH, **overrides}
        return dict(settings.ATLASSIAN_OAUTH)

    return update


@pytest.fixture
def use_keys(oauth_settings: Callable[..., dict[str, Any]]) -> Callable[..., None]:
    """``use_keys(*keys)``: make ``keys`` the ENCRYPTION_KEYS (the first one encrypts)."""

    def use(*keys: str) -> None:
        oauth_settings(ENCRYPTION_KEYS=list(keys))

    return use


# ---- sites and users ------------------------------------------------------------------------


@pytest.fixture
def sites(db: None) -> Iterator[tuple[Site, Site]]:
    """The two tenants the demo has: ``(localhost, 127.0.0.1)``.

    ``localhost`` takes over the default site's row, as the demo's seed does. The sites
    framework caches sites by host across tests, so the cache is cleared before and after.
    """
    Site.objects.clear_cache()
    localhost, _ = Site.objects.update_or_create(
        pk=1, defaults={"domain": "localhost", "name": "localhost"}
    )
    other = Site.objects.create(domain="127.0.0.1", name="127.0.0.1")
    yield localhost, other
    Site.objects.clear_cache()


@pytest.fixture
def alice(django_user_model: Any) -> User:
    """A plain user, "alice" (the user the fake's accounts connect for)."""
    user: User = django_user_model.objects.create_user(username="alice")
    return user


@pytest.fixture
def bob(django_user_model: Any) -> User:
    """Another plain user, "bob"."""
    user: User = django_user_model.objects.create_user(username="bob")
    return user


@pytest.fixture
def alice_client(client: Client, alice: User, sites: tuple[Site, Site]) -> Client:
    """pytest-django's ``client`` (the same object) logged in as alice, with the ``sites``."""
    client.force_login(alice)
    return client


# ---- the fake Atlassian ---------------------------------------------------------------------


@pytest.fixture
def accepting(fake_atlassian: FakeAtlassian) -> FakeAtlassian:
    """``fake_atlassian`` with consent given at once: /authorize redirects back with a code."""
    fake_atlassian.auto_consent = "accept"
    return fake_atlassian
