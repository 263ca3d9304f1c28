"""The demo's one use of Jira: the issues assigned to the user, read through ``get_session``.

This is what the README teaches integrators: application code asks for a session and never sees
a token; each state the connection can be in is an exception to handle, not a crash.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from atlassian_oauth.api import (
    NotConnected,
    ReconnectRequired,
    SiteChoiceRequired,
    TemporarilyUnavailable,
    get_session,
)

#: Jira's issue search (the endpoint that replaced ``rest/api/3/search``).
JIRA_SEARCH = "rest/api/3/search/jql"
MY_ISSUES_JQL = "assignee = currentUser() ORDER BY updated DESC"
FIELDS = "summary,status,issuetype,priority,updated"
#: Jira's timestamps: 2024-05-01T09:30:00.000+0000.
JIRA_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"


class Outcome(enum.Enum):
    LISTED = "listed"
    NOT_CONNECTED = "not_connected"
    RECONNECT = "reconnect"
    CHOOSE_SITE = "choose_site"
    UNAVAILABLE = "unavailable"
    BAD_ANSWER = "bad_answer"


#: What the page says in each state but the first; a connect button follows the first two.
PROBLEMS = {
    Outcome.NOT_CONNECTED: _("Connect Jira to see your issues here."),
    Outcome.RECONNECT: _(
        "Atlassian no longer accepts this connection: connect Jira again to see your issues."
    ),
    Outcome.CHOOSE_SITE: _(
        "Your Atlassian account reaches several Jira sites, or the one you chose is gone: "
        "choose one under Connection details to see your issues."
    ),
    Outcome.UNAVAILABLE: _("Jira cannot be reached right now; try again in a moment."),
    Outcome.BAD_ANSWER: _("Jira did not answer as expected; try again in a moment."),
}


@dataclass(frozen=True)
class Issue:
    key: str
    summary: str
    status: str
    #: Jira's status category: "new", "indeterminate" or "done" (the badge's colour).
    category: str = ""
    kind: str = ""
    priority: str = ""
    updated: datetime | None = None


@dataclass(frozen=True)
class MyIssues:
    outcome: Outcome
    issues: list[Issue] = field(default_factory=list)
    #: The Jira site searched (its name, e.g. "acme"), when the search ran.
    site_name: str = ""

    @property
    def state(self) -> str:
        return self.outcome.value

    @property
    def problem(self) -> str:
        return str(PROBLEMS.get(self.outcome, ""))

    @property
    def needs_connect(self) -> bool:
        return self.outcome in (Outcome.NOT_CONNECTED, Outcome.RECONNECT)


def my_issues(
    user: AbstractBaseUser | AnonymousUser, request: HttpRequest, limit: int = 20
) -> MyIssues:
    """The user's Jira issues on the request's site, or the reason there are none to show."""
    try:
        with get_session(user, request) as session:
            response = session.get(
                session.jira_url(JIRA_SEARCH),
                params={"jql": MY_ISSUES_JQL, "maxResults": str(limit), "fields": FIELDS},
            )
            site = session.default_site("jira").name
        response.raise_for_status()
        issues = parse_issues(response.json())
    except SiteChoiceRequired:
        return MyIssues(Outcome.CHOOSE_SITE)
    except NotConnected:
        return MyIssues(Outcome.NOT_CONNECTED)
    except ReconnectRequired:
        return MyIssues(Outcome.RECONNECT)
    except TemporarilyUnavailable:
        return MyIssues(Outcome.UNAVAILABLE)
    except (requests.RequestException, ValueError):
        # Jira answered with an error or with something that is not a search result.
        return MyIssues(Outcome.BAD_ANSWER)
    return MyIssues(Outcome.LISTED, issues, site)


def parse_issues(payload: Any) -> list[Issue]:
    """The issues of a Jira search result; ValueError if it is none."""
    found = payload.get("issues") if isinstance(payload, dict) else None
    if not isinstance(found, list):
        raise ValueError("not a Jira search result")
    return [_issue(item) for item in found]


def _issue(item: Any) -> Issue:
    fields = item.get("fields") if isinstance(item, dict) else None
    if not isinstance(fields, dict):
        raise ValueError("not a Jira issue")
    status = _dict(fields.get("status"))
    return Issue(
        key=str(item.get("key", "")),
        summary=str(fields.get("summary", "")),
        status=str(status.get("name", "")),
        category=str(_dict(status.get("statusCategory")).get("key", "")),
        kind=str(_dict(fields.get("issuetype")).get("name", "")),
        priority=str(_dict(fields.get("priority")).get("name", "")),
        updated=_time(fields.get("updated")),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), JIRA_TIME_FORMAT)
    except ValueError:
        return None
