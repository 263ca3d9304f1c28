from __future__ import annotations

from typing import Any

import requests
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from atlassian_oauth.api import (
    NotConnected,
    ReconnectRequired,
    TemporarilyUnavailable,
    get_session,
)

#: Jira's issue search (the endpoint that replaced ``rest/api/3/search``).
JIRA_SEARCH = "rest/api/3/search/jql"
MY_ISSUES_JQL = "assignee = currentUser() ORDER BY updated DESC"


def home(request: HttpRequest) -> HttpResponse:
    """The tenant's home page: which site this host is, who is logged in."""
    return render(request, "demo_site/home.html", {"site": request.site})


@never_cache
@login_required
def jira_issues(request: HttpRequest) -> HttpResponse:
    """The user's Jira issues, read through ``get_session``: application code never sees a
    token, and the session refreshes it when it is about to expire."""
    issues: list[dict[str, str]] = []
    problem, connect, status = "", False, 200
    try:
        with get_session(request.user, request) as session:
            response = session.get(
                session.jira_url(JIRA_SEARCH),
                params={"jql": MY_ISSUES_JQL, "maxResults": "20", "fields": "summary,status"},
            )
        response.raise_for_status()
        issues = _issues(response.json())
    except NotConnected:
        problem, connect = "Connect Jira to see your issues here.", True
    except ReconnectRequired:
        problem, connect = "Atlassian no longer accepts this connection: connect Jira again.", True
    except TemporarilyUnavailable:
        # The 503 tells monitors (and the load test) that the page could not do its job.
        problem, status = "Jira cannot be reached right now; try again in a moment.", 503
    except (requests.RequestException, ValueError):
        # Jira answered with an error or with something that is not a search result.
        problem, status = "Jira did not answer as expected; try again in a moment.", 502
    context = {"issues": issues, "problem": problem, "connect": connect}
    return render(request, "demo_site/jira_issues.html", context, status=status)


def _issues(payload: Any) -> list[dict[str, str]]:
    """Key, summary and status of each issue of a Jira search result; ValueError if it is none."""
    found = payload.get("issues") if isinstance(payload, dict) else None
    if not isinstance(found, list):
        raise ValueError("not a Jira search result")
    issues = []
    for issue in found:
        fields = issue.get("fields") if isinstance(issue, dict) else None
        if not isinstance(fields, dict):
            raise ValueError("not a Jira issue")
        status = fields.get("status")
        issues.append(
            {
                "key": str(issue.get("key", "")),
                "summary": str(fields.get("summary", "")),
                "status": str(status.get("name", "")) if isinstance(status, dict) else "",
            }
        )
    return issues
