"""Thin views over ``connect``: the status page, connect, callback and disconnect."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.sites.models import Site
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from . import connect as flow
from .conf import SETTINGS_NAME, conf
from .health import grant_health
from .models import AuthorizationState, Connection, Event, health_expression

logger = logging.getLogger(__name__)

CLEANSED_SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute

MAX_NEXT_LENGTH = AuthorizationState._meta.get_field("next_url").max_length or 2000


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it is a path, or a URL on this host (and scheme), that fits where it
    is kept; else "". Never a URL name: those are resolved only from the settings."""
    if not candidate or len(candidate) > MAX_NEXT_LENGTH:
        return ""
    parts = urlsplit(candidate)
    is_path = not parts.scheme and not parts.netloc and candidate.startswith("/")
    is_url = parts.scheme in ("http", "https") and bool(parts.netloc)
    if (is_path or is_url) and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _default_destination() -> str:
    """Where a finished connect goes without ``next``: CONNECT_REDIRECT_URL (a path, URL or
    URL name), or the status page. Resolved before the callback stores anything, and never
    failing, so a bad setting cannot turn a stored connection into an error page."""
    setting = conf.CONNECT_REDIRECT_URL
    if setting:
        try:
            return resolve_url(setting)
        except NoReverseMatch:
            logger.error(
                "%s['CONNECT_REDIRECT_URL'] = %r is neither a URL nor a URL name; "
                "sending the user to the status page.",
                SETTINGS_NAME,
                setting,
            )
    return reverse("atlassian_oauth:status")


def _current_connection(request: HttpRequest) -> Connection | None:
    return (
        Connection.objects.select_related("grant")
        .prefetch_related("grant__resources")
        .annotate(grant_health_state=health_expression("grant__"))
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
        "health": grant_health(grant, getattr(connection, "grant_health_state", None))
        if grant
        else None,
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


#: Callback parameters that are secret (the code) or replayable with the session (the state).
SECRET_CALLBACK_PARAMETERS = ("code", "state")


def _take_callback_parameters(request: HttpRequest) -> dict[str, str]:
    """The callback's parameters; the request keeps them only starred out from here on, so an
    error report (Django's, or any reporter reading the request) cannot show the code."""
    params = request.GET.dict()
    scrubbed = request.GET.copy()
    for name in SECRET_CALLBACK_PARAMETERS:
        if name in scrubbed:
            scrubbed[name] = CLEANSED_SUBSTITUTE
    request.GET = scrubbed  # type: ignore[assignment]  # a copy is mutable; Django does not mind
    request.META["QUERY_STRING"] = scrubbed.urlencode()
    return params


@never_cache
@login_required
@require_GET
@sensitive_variables("params")
def callback(request: HttpRequest) -> HttpResponse:
    params = _take_callback_parameters(request)
    default_destination = _default_destination()
    try:
        result = flow.complete(
            user=request.user,  # type: ignore[arg-type]  # login_required: never anonymous
            site=Site.objects.get_current(request),
            session=request.session,
            params=params,
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
        # Both candidates are plain URLs by now: this redirect cannot fail.
        response = HttpResponseRedirect(_safe_next(request, result.next_url) or default_destination)
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
