"""pytest fixtures for testing code that uses django-atlassian-oauth against the fake Atlassian.

Enable in your ``conftest.py``::

    pytest_plugins = ["atlassian_oauth.testing.pytest_plugin"]

``fake_atlassian`` is the fake, reset for the test, with ``settings.ATLASSIAN_OAUTH`` pointing
at it (it needs pytest-django's ``settings`` fixture). One server serves the whole session.

The fake listens on plain ``http://127.0.0.1``, which oauthlib (under requests-oauthlib) refuses
unless the environment variable ``OAUTHLIB_INSECURE_TRANSPORT`` is set: the fixture sets it for
the test and restores it afterwards. Code that starts ``FakeAtlassian`` itself (or a process
that talks to it) sets the variable the same way; never in production (check
``atlassian_oauth.E007``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .fake_atlassian import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeAtlassian


@pytest.fixture(scope="session")
def fake_atlassian_server() -> Iterator[FakeAtlassian]:
    """The fake Atlassian, started once for the session (not reset: use ``fake_atlassian``)."""
    with FakeAtlassian() as fake:
        yield fake


@pytest.fixture
def fake_atlassian(
    fake_atlassian_server: FakeAtlassian, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> FakeAtlassian:
    """The fake Atlassian in its initial state, with the app's settings pointing at it."""
    fake_atlassian_server.reset()
    if fake_atlassian_server.url.startswith("http://"):
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    settings.ATLASSIAN_OAUTH = {
        **getattr(settings, "ATLASSIAN_OAUTH", {}),
        "CLIENT_ID": DEFAULT_CLIENT_ID,
        "CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "AUTH_BASE_URL": fake_atlassian_server.url,
        "API_BASE_URL": fake_atlassian_server.url,
    }
    return fake_atlassian_server
