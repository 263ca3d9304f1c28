"""A pytest plugin for ``make mutation``: one SQLite test database per mutmut worker process.

mutmut forks a worker per mutant from one parent, so every worker inherits the same settings and
would create, use and destroy the same ``test-db.sqlite3`` at once. Loaded with
``-p tests.adversarial.test_mutants_isolation`` (setup.cfg's [mutmut] section), it gives each
pytest session a file of its own, named by the process id. Collected as a test module in the
normal suite it holds no tests and registers no hook (only ``-p`` makes a module a plugin).
"""

from __future__ import annotations

import os

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    from django.conf import settings

    for database in settings.DATABASES.values():
        test = database.setdefault("TEST", {})
        name = test.get("NAME")
        if database["ENGINE"] == "django.db.backends.sqlite3" and name and name != ":memory:":
            # Before pytest-django's session fixture reads it: the suffix holds for the session.
            base = str(name).split(".mutant-", 1)[0]
            test["NAME"] = f"{base}.mutant-{os.getpid()}"
