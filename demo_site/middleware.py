"""The demo's current-site middleware: Django's, except on the connect host."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.sites.models import Site
from django.contrib.sites.shortcuts import get_current_site
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse


class CurrentSiteMiddleware:
    """Sets ``request.site`` from the host, as Django's does. The connect host is no tenant
    (no ``Site``): there only the app's callback answers, which needs no site; anything else
    is not found, instead of Django's middleware failing every request with an error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            request.site = get_current_site(request)  # type: ignore[assignment]  # as Django does
        except Site.DoesNotExist:
            if request.path != reverse("atlassian_oauth:callback"):
                raise Http404("No tenant on this host.") from None
        return self.get_response(request)
