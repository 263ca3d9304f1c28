from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.contrib.sites.models import Site
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from demo_site.demo_data import DEMO_USERS
from demo_site.jira import MyIssues, Outcome, my_issues


@dataclass(frozen=True)
class Tenant:
    name: str
    url: str


def other_tenants(request: HttpRequest) -> list[Tenant]:
    """The demo's other tenants: the same server on their own host names, on this port."""
    # The port the browser used (in the Host header), which behind a proxy is not the server's.
    _host, port = split_domain_port(request.get_host())
    suffix = f":{port}" if port else ""
    scheme = request.scheme or "http"
    sites = Site.objects.all().order_by("pk")
    current = getattr(request, "site", None)
    if isinstance(current, Site):
        sites = sites.exclude(pk=current.pk)
    return [Tenant(site.name, f"{scheme}://{site.domain}{suffix}/") for site in sites]


class DemoLoginView(LoginView):
    """Django's login page, listing the demo's users while DEBUG is on (as it is for the demo:
    their passwords are in the README and the terminal anyway)."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["demo_users"] = DEMO_USERS if settings.DEBUG else ()
        return context


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """The tenant's home page: who is logged in and, once Jira is connected, their issues.

    Always a 200, whatever state the connection is in: the page says what to do instead.
    """
    jira = my_issues(request.user, request, limit=10) if request.user.is_authenticated else None
    context = {"site": request.site, "jira": jira, "other_tenants": other_tenants(request)}
    return render(request, "demo_site/home.html", context)


#: The /jira/ page's status in each state: monitors (and the load test) see when it could not do
#: its job.
JIRA_PAGE_STATUS = {Outcome.UNAVAILABLE: 503, Outcome.BAD_ANSWER: 502}


@never_cache
@login_required
def jira_issues(request: HttpRequest) -> HttpResponse:
    """The user's Jira issues on a page of their own."""
    jira: MyIssues = my_issues(request.user, request)
    status = JIRA_PAGE_STATUS.get(jira.outcome, 200)
    return render(request, "demo_site/jira_issues.html", {"jira": jira}, status=status)
