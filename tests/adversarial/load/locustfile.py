"""Locust users for tests/adversarial/test_load.py (run headless as a subprocess, never imported
by pytest: locust patches the standard library with gevent on import).

Each simulated user logs in to the demo site as its own Django user (``LOAD_USERNAME`` with its
index), then loads its Jira connection page and its Jira issues (``/jira/``, which calls Jira
through ``get_session``) in a loop. A page counts as failed unless it is a 200 that shows what
the user must see: a page that says "not connected" or "try again" is an error, not a success.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.exception import StopUser

USERS = int(os.environ.get("LOAD_USERS", "50"))
USERNAME = os.environ.get("LOAD_USERNAME", "load{index:03d}")
PASSWORD = os.environ.get("LOAD_PASSWORD", "load-test-password")
#: Every request gives up after this long: a hung server is a failure, not a stuck run.
TIMEOUT = float(os.environ.get("LOAD_REQUEST_TIMEOUT", "30"))
#: Think time between one user's requests, so 50 users look like people, not a flood.
WAIT_MIN = float(os.environ.get("LOAD_WAIT_MIN", "0.2"))
WAIT_MAX = float(os.environ.get("LOAD_WAIT_MAX", "1.0"))
#: What each page shows only when it did its job.
STATUS_MARKER = "Connected as"
ISSUES_MARKER = os.environ.get("LOAD_ISSUE_MARKER", "ACME-1")

#: Where the final figures go, as JSON (see ``write_results``).
RESULTS = os.environ.get("LOAD_RESULTS", "")
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# One locust process runs every user in one thread of greenlets: a plain counter is enough.
_next_index = itertools.count()


class DemoSiteUser(HttpUser):
    wait_time = between(WAIT_MIN, WAIT_MAX)

    def on_start(self) -> None:
        index = next(_next_index)
        if index >= USERS:
            raise StopUser()
        username = USERNAME.format(index=index)
        with self.client.get(
            "/accounts/login/", name="login form", timeout=TIMEOUT, catch_response=True
        ) as form:
            token = CSRF_TOKEN.search(form.text or "")
            if form.status_code != 200 or token is None:
                form.failure(f"login form: {form.status_code}, CSRF token found: {bool(token)}")
                raise StopUser()
            form.success()
        with self.client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": token.group(1),
                "next": "/",
            },
            name="log in",
            timeout=TIMEOUT,
            allow_redirects=False,
            catch_response=True,
        ) as login:
            # Django answers a good login with a redirect and a bad one with the form again.
            if login.status_code != 302:
                login.failure(f"{username} did not log in: {login.status_code}")
                raise StopUser()
            login.success()

    def _page(self, path: str, name: str, marker: str) -> None:
        with self.client.get(
            path, name=name, timeout=TIMEOUT, allow_redirects=False, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")
            elif marker not in response.text:
                response.failure(f"200 without {marker!r}")
            else:
                response.success()

    @task
    def status_page(self) -> None:
        self._page("/atlassian/", "status page", STATUS_MARKER)

    @task
    def jira_issues(self) -> None:
        self._page("/jira/", "jira issues", ISSUES_MARKER)


_environment: list[Environment] = []


@events.init.add_listener
def _remember(environment: Environment, **kwargs: Any) -> None:
    _environment.append(environment)


@events.quit.add_listener
def write_results(exit_code: int, **kwargs: Any) -> None:
    """Write the final statistics: ``quit`` fires after every user stopped, so unlike locust's
    CSV files (rewritten once a second) nothing that finished late is missing."""
    if not RESULTS or not _environment:
        return
    stats = _environment[0].stats
    entries = [*stats.entries.values(), stats.total]
    results = {
        "exit_code": exit_code,
        "requests": {
            entry.name: {
                "count": entry.num_requests,
                "failures": entry.num_failures,
                # Locust keeps response times rounded (to 10 ms above 100 ms, 100 ms above 1 s).
                **{
                    key: entry.get_response_time_percentile(value) if entry.num_requests else None
                    for key, value in PERCENTILES.items()
                },
            }
            for entry in entries
        },
        "errors": [error.to_dict() for error in stats.errors.values()],
    }
    Path(RESULTS).write_text(json.dumps(results, indent=2))
