"""Thin views over ``connect``: the status page, connect, callback and disconnect.

Connect and disconnect change state on POST only; their GET shows the page with the button
(connect) or asks for confirmation (disconnect).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.sites.models import Site
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import connect as flow
from . import resources as sites
from .conf import SETTINGS_NAME, conf
from .health import clock, configured_scopes, grant_health, product_name
from .models import AuthorizationState, Connection, Event, GrantHealth, health_expression

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
        Connection.objects.select_related("grant", "jira_resource", "confluence_resource")
        .prefetch_related("grant__resources")
        .annotate(grant_health_state=health_expression("grant__"))
        .filter(user=request.user.pk, site=Site.objects.get_current(request))
        .first()
    )


#: States in which the tokens are not renewed until someone acts (the user, or an admin).
STOPPED_STATES = frozenset(
    {GrantHealth.NEEDS_RECONNECT, GrantHealth.NO_REFRESH_TOKEN, GrantHealth.CONFIGURATION_ERROR}
)


def _status_context(request: HttpRequest, connection: Connection | None) -> dict[str, Any]:
    """What the status and disconnect pages show about the user's connection on this site."""
    grant = connection.grant if connection else None
    if connection is None or grant is None:
        return {
            "connection": None,
            "grant": None,
            "product": product_name(configured_scopes(Site.objects.get_current(request))),
        }
    health = grant_health(grant, getattr(connection, "grant_health_state", None))
    now = timezone.now()
    listed = list(grant.resources.all())  # prefetched
    default_sites = sites.default_sites(connection, listed)
    return {
        "connection": connection,
        "grant": grant,
        "health": health,
        "product": product_name(grant.scope_list),
        # A grant Atlassian refused has no token worth a time: say since when it is dead.
        "dead": health.state == GrantHealth.NEEDS_RECONNECT,
        "token_expired": grant.access_token_expires_at <= now,
        "renews_itself": health.state not in STOPPED_STATES,
        "resources": listed,
        # Per product: the site in use, or the choice the user has to make.
        "sites": default_sites,
        "choices": [site for site in default_sites if site.choosable],
        "in_use": {site.resource.pk for site in default_sites if site.usable and site.resource},
        "shared_notice": _shared_notice(connection),
        "connected_apps_url": flow.CONNECTED_APPS_URL,
        "now": now,
    }


def _shared_notice(connection: Connection) -> str:
    """ "Also connected on …" when the grant serves connections on other sites too: reconnecting
    replaces its tokens, and revoking it at Atlassian ends it, for all of them."""
    domains = sites.shared_with(connection)
    if not domains:
        return ""
    return ngettext(
        "Also connected on %(sites)s: reconnecting or revoking affects both.",
        "Also connected on %(sites)s: reconnecting or revoking affects all of them.",
        len(domains),
    ) % {"sites": get_text_list(domains, _("and"))}


@never_cache
@login_required
@require_GET
def status(request: HttpRequest) -> HttpResponse:
    context = _status_context(request, _current_connection(request))
    return render(request, "atlassian_oauth/status.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def connect(request: HttpRequest) -> HttpResponse:
    """POST (the button) starts the round trip; GET (a link an integrator wrote) only shows a
    page with the button, since a GET can be made to happen from another site."""
    if request.method != "POST":
        next_url = _safe_next(request, request.GET.get("next"))
        context = _status_context(request, _current_connection(request))
        context["next_url"] = next_url
        return render(request, "atlassian_oauth/connect.html", context)
    callback = request.build_absolute_uri(reverse("atlassian_oauth:callback"))
    site = Site.objects.get_current(request)
    try:
        url = flow.begin(
            user=request.user,  # type: ignore[arg-type]  # login_required: never anonymous
            site=site,
            session=request.session,
            redirect_uri=callback,
            next_url=_safe_next(request, request.POST.get("next")),
        )
    except ImproperlyConfigured as error:
        # The user gets a sentence; whoever runs the site needs the reason (no secret in it).
        logger.error("Connect failed on %s: %s", site.domain, error)
        messages.error(
            request,
            _("%(product)s connections are not configured on this site.")
            % {"product": product_name(configured_scopes(site))},
        )
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
@require_GET
@sensitive_variables()
def callback(request: HttpRequest) -> HttpResponse:
    """On the connect host, hand another tenant's flow back to that tenant's host (no login
    there: the session lives on the tenant's host); anywhere else, finish the round trip."""
    handed = flow.bounce(
        host=request.get_host(),
        secure=request.is_secure(),
        state=request.GET.get("state", ""),
        path=reverse("atlassian_oauth:callback"),
        query=request.GET.urlencode(),
    )
    if handed is None:
        return _finish(request)
    _take_callback_parameters(request)
    if handed.location:
        response: HttpResponse = HttpResponseRedirect(handed.location)
    else:
        # A page of its own, not the site's frame: the connect host need not be a Site.
        response = render(
            request, "atlassian_oauth/connect_host.html", {"reason": handed.reason}, status=400
        )
    # The URL holds the code: never pass it on as a referrer, here or from the tenant's page.
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
@sensitive_variables("params")
def _finish(request: HttpRequest) -> HttpResponse:
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
            _("%(product)s is connected as %(account)s.")
            % {"product": product_name(grant.scope_list), "account": grant},
        )
        if result.missing_refresh_token:
            messages.warning(
                request,
                _(
                    "Atlassian sent no refresh token, so %(product)s stops working at %(time)s. "
                    "An administrator has to add offline_access to this site's scopes; then "
                    "reconnect."
                )
                % {
                    "product": product_name(grant.scope_list),
                    "time": clock(grant.access_token_expires_at),
                },
            )
        # Both candidates are plain URLs by now: this redirect cannot fail.
        response = HttpResponseRedirect(_safe_next(request, result.next_url) or default_destination)
    # The URL that brought the user here held the code: never pass it on as a referrer.
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation (a page with a POST form: no JavaScript needed); POST
    disconnects."""
    connection = _current_connection(request)
    if request.method != "POST":
        context = _status_context(request, connection)
        return render(request, "atlassian_oauth/disconnect.html", context)
    if connection is None:
        messages.info(
            request,
            _("%(product)s was not connected.")
            % {"product": product_name(configured_scopes(Site.objects.get_current(request)))},
        )
        return redirect("atlassian_oauth:status")
    product = product_name(connection.grant.scope_list)
    flow.disconnect(connection, actor=Event.Actor.USER)
    # format_html escapes the arguments; only the (translated) sentence itself is markup.
    messages.success(
        request,
        format_html(
            _(
                "{product} is disconnected. To revoke this site's access at Atlassian too, "
                'remove it from your <a href="{url}" rel="noreferrer noopener">connected '
                "apps</a> there."
            ),
            product=product,
            url=flow.CONNECTED_APPS_URL,
        ),
    )
    return redirect("atlassian_oauth:status")


@never_cache
@login_required
@require_POST
def choose_site(request: HttpRequest) -> HttpResponse:
    """POST (the status page's form): make one of the account's sites the one this site works
    with for a product. Only ever the user's own connection on this site."""
    connection = _current_connection(request)
    if connection is None:
        messages.info(
            request,
            _("%(product)s is not connected, so there is no site to choose.")
            % {"product": product_name(configured_scopes(Site.objects.get_current(request)))},
        )
        return redirect("atlassian_oauth:status")
    product = request.POST.get("product", "")
    try:
        chosen = sites.choose(connection, product, request.POST.get("resource", ""))
    except sites.InvalidChoice:
        messages.error(
            request, _("That Atlassian site cannot be chosen. Choose one of the sites listed.")
        )
    else:
        messages.success(
            request,
            _("This site now works with the %(product)s site %(site)s.")
            % {"product": sites.PRODUCT_NAMES[product], "site": chosen.name},
        )
    return redirect("atlassian_oauth:status")
