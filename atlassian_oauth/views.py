"""Thin views over ``connect``: the status page, connect, callback and disconnect."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.sites.models import Site
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import connect as flow
from .conf import conf
from .health import grant_health
from .models import AuthorizationState, Connection, Event

MAX_NEXT_LENGTH = AuthorizationState._meta.get_field("next_url").max_length or 2000


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it stays on this host (and scheme) and fits where it is kept, else ""."""
    if (
        candidate
        and len(candidate) <= MAX_NEXT_LENGTH
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return ""


def _current_connection(request: HttpRequest) -> Connection | None:
    return (
        Connection.objects.select_related("grant")
        .prefetch_related("grant__resources")
        .filter(user=request.user.pk, site=Site.objects.get_current(request))
        .first()
    )


@never_cache
@login_required
@require_GET
def status(request: HttpRequest) -> HttpResponse:
    connection = _current_connection(request)
    grant = connection.grant if connection else None
    context = {
        "connection": connection,
        "grant": grant,
        "health": grant_health(grant) if grant else None,
        "resources": list(grant.resources.all()) if grant else [],
        "connected_apps_url": flow.CONNECTED_APPS_URL,
    }
    return render(request, "atlassian_oauth/status.html", context)


@never_cache
@login_required
@require_GET
def connect(request: HttpRequest) -> HttpResponse:
    callback = request.build_absolute_uri(reverse("atlassian_oauth:callback"))
    try:
        url = flow.begin(
            user=request.user,  # type: ignore[arg-type]  # login_required: never anonymous
            site=Site.objects.get_current(request),
            session=request.session,
            redirect_uri=callback,
            next_url=_safe_next(request, request.GET.get("next")),
        )
    except ImproperlyConfigured:
        messages.error(request, _("Jira connections are not configured on this site yet."))
        return redirect("atlassian_oauth:status")
    return HttpResponseRedirect(url)


@never_cache
@login_required
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    try:
        result = flow.complete(
            user=request.user,  # type: ignore[arg-type]  # login_required: never anonymous
            site=Site.objects.get_current(request),
            session=request.session,
            params=request.GET.dict(),
        )
    except flow.ConnectFailed as failure:
        messages.error(request, str(failure))
        response = redirect("atlassian_oauth:status")
    else:
        grant = result.connection.grant
        messages.success(
            request,
            _("Jira is connected as %(account)s.") % {"account": grant},
        )
        if result.missing_refresh_token:
            messages.warning(request, str(grant_health(grant).advice))
        destination = _safe_next(request, result.next_url) or conf.CONNECT_REDIRECT_URL
        response = redirect(resolve_url(destination or "atlassian_oauth:status"))
    # The URL that brought the user here held the code: never pass it on as a referrer.
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
@require_POST
def disconnect(request: HttpRequest) -> HttpResponse:
    connection = _current_connection(request)
    if connection is None:
        messages.info(request, _("Jira was not connected."))
        return redirect("atlassian_oauth:status")
    flow.disconnect(connection, actor=Event.Actor.USER)
    messages.success(
        request,
        _(
            "Jira is disconnected. Atlassian still lists this site among your connected apps "
            "until you remove it there: %(url)s"
        )
        % {"url": flow.CONNECTED_APPS_URL},
    )
    return redirect("atlassian_oauth:status")
