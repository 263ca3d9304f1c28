"""System checks for every misconfiguration a site can make, with stable ids.

| id | what |
|---|---|
| atlassian_oauth.E001 | ``offline_access`` missing from the scopes: no refresh token comes |
| atlassian_oauth.E002 | no encryption key, or a malformed one |
| atlassian_oauth.E003 | a client id without a secret, or a secret without an id |
| atlassian_oauth.E004 | ``django.contrib.sites`` is not installed |
| atlassian_oauth.E005 | ``read:me`` missing from the scopes: whose account is unknown |
| atlassian_oauth.E006 | a setting has the wrong type or form |
| atlassian_oauth.E007 | ``OAUTHLIB_INSECURE_TRANSPORT`` is set while ``DEBUG`` is off |
| atlassian_oauth.E008 | ``CONNECT_HOST_CALLBACK_URL``'s path is not the app's callback path |
| atlassian_oauth.E009 | both ``CALLBACK_URL`` and ``CONNECT_HOST_CALLBACK_URL`` are set |
| atlassian_oauth.W001 | no default client id and secret: only sites with their own app connect |
| atlassian_oauth.W002 | an ``http://`` callback URL while ``DEBUG`` is off |
| atlassian_oauth.W003 | a site's own Atlassian app (database) lacks offline_access or read:me |
| atlassian_oauth.W004 | Celery is configured but ``CELERY_BEAT_SCHEDULE`` lacks the refresh sweep |
| atlassian_oauth.W005 | a refresh task may outlast the broker's visibility timeout |
| atlassian_oauth.W006 | a site's own Atlassian app (database) has an ``http://`` callback URL |
| atlassian_oauth.W007 | ``REFRESH_LOCK_TIMEOUT`` is not between one refresh call and Atlassian's |
|                      | reuse leeway |
| atlassian_oauth.W008 | an ``http://`` ``CONNECT_HOST_CALLBACK_URL`` while ``DEBUG`` is off |
| atlassian_oauth.W009 | the connect host is not in ``ALLOWED_HOSTS`` |
| atlassian_oauth.W010 | a callback URL built from requests while ``DEBUG`` is off and no |
|                      | ``SECURE_PROXY_SSL_HEADER`` is set: ``http://`` behind a TLS proxy |
| atlassian_oauth.W011 | no ``SITE_ID`` and no ``Site`` for any host in ``ALLOWED_HOSTS`` |
| atlassian_oauth.W012 | ``SITE_ID`` names no ``Site`` |

W004 and W005 read Celery's settings under the ``CELERY_`` namespace that Celery documents for
Django; W004 speaks only when ``CELERY_BROKER_URL`` or ``CELERY_BEAT_SCHEDULE`` is set. A
project configuring Celery another way (or scheduling ``manage.py atlassian_oauth
refresh --due`` from cron instead) silences them with ``SILENCED_SYSTEM_CHECKS``.

W010 speaks for the default app when it has a client id and neither ``CALLBACK_URL`` nor
``CONNECT_HOST_CALLBACK_URL``, and (with ``--database``) for each site's own app without a
callback URL; not while ``ALLOWED_HOSTS`` is empty and ``DEBUG`` off, when Django serves no
request to build one from. A project whose Django serves https itself silences it.

W011 and W012 read the ``Site`` table under plain ``check`` and ``runserver`` too, since every
request fails without a site: one small query, and no message at all while the database is
not migrated, not reachable or (SQLite) not created yet. Without ``SITE_ID`` a request finds its
site by its host (``Site.domain``, port ignored); W011 speaks only when *no* host can, that is
no ``Site`` matches any ``ALLOWED_HOSTS`` entry (Django's ``.localhost``, ``127.0.0.1`` and
``[::1]`` when ``DEBUG`` is on and the list is empty): a plain entry by its domain, a
``.example.com`` entry by ``example.com`` or any domain under it, ``*`` by any ``Site`` but the
``example.com`` one that ``migrate`` creates. Django's test runner runs the checks against the
new test database, which holds only that ``example.com`` row: a test settings module whose
tests create their sites silences W011 there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router
from django.db.models import BooleanField, Case, Q, Value, When
from django.http.request import validate_host

from .beat import SWEEP_INTERVAL, SWEEP_TASK, longest_time_limits
from .conf import SETTINGS_NAME, conf

#: Brokers that hand an unacknowledged message to another worker after a visibility timeout,
#: with kombu's default for it.
VISIBILITY_TIMEOUT_DEFAULTS = {
    "redis": 3600.0,
    "rediss": 3600.0,
    "redis+socket": 3600.0,
    "sentinel": 3600.0,
    "sqs": 1800.0,
}
#: Atlassian accepts a rotated refresh token again for this long (docs/atlassian.md).
REUSE_LEEWAY = 600.0
#: The domain of the Site that django.contrib.sites' migrate creates: a placeholder, no host.
PLACEHOLDER_DOMAIN = "example.com"
#: Django's test client's host, which its test runner adds to ALLOWED_HOSTS.
TEST_CLIENT_HOST = "testserver"
#: At most this many Sites are named in W011.
SITES_NAMED = 5


def _served_hosts() -> list[str]:
    """The ALLOWED_HOSTS entries Django accepts requests for (its own default when DEBUG is on
    and the list is empty)."""
    allowed = list(settings.ALLOWED_HOSTS)
    if not allowed and settings.DEBUG:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return allowed


def _scope_errors(scopes: Sequence[str], where: str) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if "offline_access" not in scopes:
        errors.append(
            Error(
                f"The scopes in {where} lack offline_access, so Atlassian sends no refresh token "
                "and every connection stops working when its first access token expires.",
                hint="Add offline_access to the scopes; users then connect again.",
                id="atlassian_oauth.E001",
            )
        )
    if "read:me" not in scopes:
        errors.append(
            Error(
                f"The scopes in {where} lack read:me, so the app cannot ask Atlassian whose "
                "account was connected.",
                hint="Add read:me to the scopes and enable the User Identity API on the app.",
                id="atlassian_oauth.E005",
            )
        )
    return errors


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .crypto import CryptoError, get_keyring

    errors: list[CheckMessage] = []
    if not apps.is_installed("django.contrib.sites"):
        errors.append(
            Error(
                "django.contrib.sites is not installed; the app keeps one connection per site.",
                hint="Add 'django.contrib.sites' to INSTALLED_APPS and run migrate.",
                id="atlassian_oauth.E004",
            )
        )
    try:
        scopes, client_id, secret, callback = (
            conf.SCOPES,
            conf.CLIENT_ID,
            conf.CLIENT_SECRET,
            conf.CALLBACK_URL,
        )
        conf.AUTH_BASE_URL, conf.API_BASE_URL, conf.HTTP_TIMEOUT, conf.STATE_MAX_AGE  # noqa: B018
        conf.SWEEP_BATCH_SIZE  # noqa: B018
    except ImproperlyConfigured as error:
        return [*errors, Error(str(error), id="atlassian_oauth.E006")]

    errors += _scope_errors(scopes, f"{SETTINGS_NAME}['SCOPES']")
    try:
        get_keyring()
    except (CryptoError, ImproperlyConfigured) as error:
        errors.append(
            Error(
                str(error),
                hint="Generate a key with `python manage.py atlassian_oauth generate-key` and "
                f"put it first in {SETTINGS_NAME}['ENCRYPTION_KEYS'] (from the environment).",
                id="atlassian_oauth.E002",
            )
        )
    if bool(client_id) != bool(secret):
        missing = "CLIENT_SECRET" if client_id else "CLIENT_ID"
        errors.append(
            Error(
                f"{SETTINGS_NAME}['{missing}'] is empty while the other half is set.",
                hint="Copy both from the app's Settings page in the Atlassian developer console.",
                id="atlassian_oauth.E003",
            )
        )
    elif not client_id:
        errors.append(
            Warning(
                f"{SETTINGS_NAME} has no CLIENT_ID and CLIENT_SECRET: only sites with their own "
                "Atlassian app (in admin) can connect.",
                id="atlassian_oauth.W001",
            )
        )
    if callback.startswith("http://") and not settings.DEBUG:
        errors.append(_http_callback_warning(f"{SETTINGS_NAME}['CALLBACK_URL']"))
    return errors


def _behind_plain_http() -> bool:
    """A callback URL built from a request may come out http:// although users see https://:
    DEBUG off, requests served, and Django not told which header a TLS proxy sets."""
    return (
        not settings.DEBUG
        and bool(settings.ALLOWED_HOSTS)
        and not getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    )


def _request_callback_warning(where: str, fix: str, obj: Any = None) -> Warning:
    return Warning(
        f"The callback URL of {where} is built from each request while DEBUG is off and "
        "SECURE_PROXY_SSL_HEADER is not set: behind a proxy that terminates TLS, Django sees "
        "plain http and builds an http:// callback URL, which Atlassian refuses as not "
        "registered (a callback mismatch), or, where registered, the authorization code would "
        "cross the network unencrypted.",
        hint="If a proxy terminates TLS, sets X-Forwarded-Proto and strips that header from "
        'clients\' requests, set SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", '
        f'"https"); or {fix}. If Django itself serves https, silence atlassian_oauth.W010.',
        obj=obj,
        id="atlassian_oauth.W010",
    )


@register(Tags.security)
def check_request_callback(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The default app's callback URL when it is built from requests (W010; site apps' in
    ``check_site_apps``)."""
    try:
        client_id, callback, connect_host = (
            conf.CLIENT_ID,
            conf.CALLBACK_URL,
            conf.CONNECT_HOST_CALLBACK_URL,
        )
    except ImproperlyConfigured:
        return []  # check_settings reports it as E006
    # Without a client id the default app is never used (W001).
    if not client_id or callback or connect_host or not _behind_plain_http():
        return []
    return [
        _request_callback_warning(
            f"the default app ({SETTINGS_NAME} has no CALLBACK_URL)",
            f"set {SETTINGS_NAME}['CALLBACK_URL'] to the https:// callback URL registered in "
            "the Atlassian developer console",
        )
    ]


def _http_callback_warning(where: str) -> Warning:
    return Warning(
        f"The callback URL in {where} uses http:// while DEBUG is off: the authorization code "
        "would cross the network unencrypted.",
        hint="Use an https:// callback URL (and the same in the Atlassian developer console).",
        id="atlassian_oauth.W002",
    )


@register()
def check_connect_host(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The connect host's callback URL (docs/multi-tenant.md), when one is set."""
    from django.urls import NoReverseMatch, reverse

    name = f"{SETTINGS_NAME}['CONNECT_HOST_CALLBACK_URL']"
    try:
        url, callback_url = conf.CONNECT_HOST_CALLBACK_URL, conf.CALLBACK_URL
    except ImproperlyConfigured as error:
        return [Error(str(error), id="atlassian_oauth.E006")]
    if not url:
        return []
    errors: list[CheckMessage] = []
    parts = urlsplit(url)
    try:
        path = reverse("atlassian_oauth:callback")
    except NoReverseMatch:
        path = None  # the app's URLs are not included (yet): nothing to compare with
    if path is not None and parts.path != path:
        errors.append(
            Error(
                f"{name} is {url!r}, whose path is not the app's callback path {path!r}: "
                "the connect host would never see Atlassian's answer.",
                hint=f"Use {parts.scheme}://{parts.netloc}{path}, and register the same URL "
                "as the app's callback URL in the Atlassian developer console.",
                id="atlassian_oauth.E008",
            )
        )
    if callback_url:
        errors.append(
            Error(
                f"Both {SETTINGS_NAME}['CALLBACK_URL'] and {name} are set: the default app has "
                "one callback URL.",
                hint="Keep CONNECT_HOST_CALLBACK_URL when tenants on several hosts share the "
                "app, or CALLBACK_URL alone for one host.",
                id="atlassian_oauth.E009",
            )
        )
    if parts.scheme == "http" and not settings.DEBUG:
        errors.append(
            Warning(
                f"{name} uses http:// while DEBUG is off: the authorization code would cross "
                "the network unencrypted, and the connect host refuses to hand it on.",
                hint="Serve the connect host over https:// and register that URL at Atlassian.",
                id="atlassian_oauth.W008",
            )
        )
    allowed = _served_hosts()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if not validate_host(host, allowed):
        errors.append(
            Warning(
                f"The connect host {parts.netloc!r} of {name} is not in ALLOWED_HOSTS, so "
                "Django refuses Atlassian's answer there (400).",
                hint=f"Add {host!r} to ALLOWED_HOSTS.",
                id="atlassian_oauth.W009",
            )
        )
    return errors


@register(Tags.security)
def check_insecure_transport(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # oauthlib reads the variable on every call, process-wide: set, it lets tokens, codes and
    # the client secret travel over plain http:// to any URL the app is pointed at.
    if not os.environ.get("OAUTHLIB_INSECURE_TRANSPORT"):
        return _http_base_url_errors()
    if settings.DEBUG:
        return []
    return [
        Error(
            "The environment variable OAUTHLIB_INSECURE_TRANSPORT is set while DEBUG is off: "
            "oauthlib then sends authorization codes, tokens and the client secret over "
            "http:// too.",
            hint="Unset it outside development; it is only for a local stand-in of Atlassian "
            "(the testing kit's fake, the demo).",
            id="atlassian_oauth.E007",
        )
    ]


def _http_base_url_errors() -> list[CheckMessage]:
    """E010: an http:// base URL (the fake Atlassian) while oauthlib refuses http://: every
    connect ends in "not configured" and every refresh in a configuration error."""
    try:
        urls = {"AUTH_BASE_URL": conf.AUTH_BASE_URL, "API_BASE_URL": conf.API_BASE_URL}
    except ImproperlyConfigured:
        return []  # check_settings reports it as E006
    plain = [name for name, url in urls.items() if url.startswith("http://")]
    if not plain:
        return []
    return [
        Error(
            f"{' and '.join(plain)} in {SETTINGS_NAME} {'is' if len(plain) == 1 else 'are'} "
            "http:// but the environment variable OAUTHLIB_INSECURE_TRANSPORT is not set in this "
            "process: oauthlib refuses http://, so connecting says the connections are not "
            "configured and no token can be refreshed.",
            hint="With a local stand-in of Atlassian (the fake) only, set "
            "OAUTHLIB_INSECURE_TRANSPORT=1 in the environment (or .env) of every process: web, "
            "worker, beat. For Atlassian, leave both base URLs at their https:// defaults.",
            id="atlassian_oauth.E010",
        )
    ]


@register(Tags.database)
def check_site_apps(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Runs with ``manage.py check --database default`` (it reads the AtlassianApp rows)."""
    from .models import AtlassianApp

    try:
        client_id, connect_host = conf.CLIENT_ID, conf.CONNECT_HOST_CALLBACK_URL
    except ImproperlyConfigured:
        client_id, connect_host = "", ""  # check_settings reports it as E006
    warnings: list[CheckMessage] = []
    rows: list[AtlassianApp] = []
    for alias in databases or ():
        try:
            rows += AtlassianApp.objects.using(alias).select_related("site")
        except DatabaseError:
            continue  # not migrated yet: `migrate` will say so
    for row in rows:
        where = f"the Atlassian app of site {row.site.domain!r}"
        for error in _scope_errors(row.scopes.split() or conf.SCOPES, where):
            warnings.append(Warning(error.msg, hint=error.hint, obj=row, id="atlassian_oauth.W003"))
        if row.callback_url.startswith("http://") and not settings.DEBUG:
            warning = _http_callback_warning(where)
            warnings.append(
                Warning(warning.msg, hint=warning.hint, obj=row, id="atlassian_oauth.W006")
            )
        # An empty callback URL is built from the request, unless the app is the default one
        # and the connect host's callback serves it (connect.registered_callback).
        from_request = not (row.callback_url or (connect_host and row.client_id == client_id))
        if from_request and _behind_plain_http():
            warnings.append(
                _request_callback_warning(
                    f"{where} (its callback URL is empty)",
                    "give the site's app, in admin, the https:// callback URL registered for it "
                    "in the Atlassian developer console",
                    obj=row,
                )
            )
    return warnings


@register()
def check_celery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    uses_celery = hasattr(settings, "CELERY_BROKER_URL") or hasattr(
        settings, "CELERY_BEAT_SCHEDULE"
    )
    schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None) or {}
    entries = schedule.values() if isinstance(schedule, Mapping) else ()
    if uses_celery and not any(
        isinstance(entry, Mapping) and entry.get("task") == SWEEP_TASK for entry in entries
    ):
        warnings.append(
            Warning(
                f"CELERY_BEAT_SCHEDULE has no entry for {SWEEP_TASK}, so nothing refreshes "
                "idle connections: their access tokens expire, and a refresh token unused "
                "for 90 days dies, so the user has to connect again.",
                hint="Add the app's entries: `from atlassian_oauth.beat import BEAT_SCHEDULE as "
                "ATLASSIAN_OAUTH_BEAT_SCHEDULE`, then `CELERY_BEAT_SCHEDULE = "
                "{**ATLASSIAN_OAUTH_BEAT_SCHEDULE, ...}`.",
                id="atlassian_oauth.W004",
            )
        )
    try:
        soft, hard = longest_time_limits()
        http, lock, jitter = conf.HTTP_TIMEOUT, conf.REFRESH_LOCK_TIMEOUT, conf.BEAT_JITTER
        rate = conf.REFRESH_RATE_LIMIT
    except ImproperlyConfigured:
        return warnings  # check_settings reports it as E006
    visibility = _visibility_timeout()
    # A countdown is spent unacknowledged in the worker, so it counts against the timeout.
    longest = hard + jitter + (SWEEP_INTERVAL if rate is not None else 0.0)
    if visibility is not None and not (http < soft < hard and longest < visibility):
        warnings.append(
            Warning(
                f"A refresh task may be held for {longest:.0f} s (its countdown, then its "
                f"{hard:.0f} s hard time limit), not less than the broker's visibility timeout "
                f"of {visibility:.0f} s: the broker would hand it to a second worker meanwhile.",
                hint="Raise CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], or lower "
                f"{SETTINGS_NAME}['REFRESH_WAIT'], ['HTTP_TIMEOUT'], ['BEAT_JITTER'] or "
                "['SWEEP_BATCH_SIZE'].",
                id="atlassian_oauth.W005",
            )
        )
    # requests applies HTTP_TIMEOUT to connecting and to reading, so a call may take twice that.
    if not 2 * http < lock < REUSE_LEEWAY:
        warnings.append(
            Warning(
                f"{SETTINGS_NAME}['REFRESH_LOCK_TIMEOUT'] is {lock:.0f} s; it must exceed the "
                f"longest refresh call (2 x HTTP_TIMEOUT = {2 * http:.0f} s), or a second worker "
                "may refresh the same grant meanwhile, and stay under Atlassian's "
                f"{REUSE_LEEWAY:.0f} s reuse leeway, or the retry after a crashed worker presents "
                "a refresh token Atlassian rotated too long ago and the grant is revoked.",
                hint=f"Set REFRESH_LOCK_TIMEOUT between {2 * http:.0f} and {REUSE_LEEWAY:.0f} "
                "seconds (the default is 60).",
                id="atlassian_oauth.W007",
            )
        )
    return warnings


def _visibility_timeout() -> float | None:
    """The broker's visibility timeout in seconds, or None when the broker has none."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    configured = options.get("visibility_timeout") if isinstance(options, Mapping) else None
    if isinstance(configured, int | float) and not isinstance(configured, bool):
        return float(configured)
    url = getattr(settings, "CELERY_BROKER_URL", None)
    if not isinstance(url, str):
        return None
    return VISIBILITY_TIMEOUT_DEFAULTS.get(url.partition("://")[0].lower())


# ---- the current site (django.contrib.sites) --------------------------------------------------


def _host_condition(entry: str) -> Q:
    """The Sites whose domain (port ignored) Django's host check accepts for one
    ALLOWED_HOSTS entry; for ``*`` any but the placeholder ``example.com``."""
    entry = entry.lower()
    if entry == "*":
        return ~Q(domain__iexact=PLACEHOLDER_DOMAIN)
    bare = entry.removeprefix(".")
    condition = Q(domain__iexact=bare) | Q(domain__istartswith=f"{bare}:")
    if entry.startswith("."):
        condition |= Q(domain__iendswith=entry) | Q(domain__icontains=f"{entry}:")
    return condition


def _not_created(alias: str) -> bool:
    """A SQLite database file that is not there yet (connecting would create it, empty)."""
    connection = connections[alias]
    name = str(connection.settings_dict.get("NAME") or "")
    return (
        connection.vendor == "sqlite"
        and name not in ("", ":memory:")
        and not name.startswith("file:")
        and not os.path.exists(name)
    )


@register()
def check_current_site(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Whether requests find their Site (W011, W012): under plain ``check`` and ``runserver``
    too, with one small query; nothing while the database cannot answer."""
    if not apps.is_installed("django.contrib.sites"):
        return []  # check_settings reports it as E004
    from django.contrib.sites.models import Site

    site_id = getattr(settings, "SITE_ID", "")  # as Site.objects.get_current() reads it
    hosts = [host for host in _served_hosts() if host.lower() != TEST_CLIENT_HOST]
    if site_id and not isinstance(site_id, int):
        return []  # django.contrib.sites reports it as sites.E101
    if not site_id and not hosts:
        return []  # Django serves no request (security.W020 under --deploy)
    try:
        alias = router.db_for_read(Site)
        if _not_created(alias):
            return []
        sites = Site.objects.using(alias)
        if site_id:
            if sites.filter(pk=site_id).exists():
                return []
            return [
                Warning(
                    f"SITE_ID is {site_id!r}, but no Site has that id: the site of every "
                    "request (CurrentSiteMiddleware, the app's pages) and of "
                    "get_session(user) is not found (Site.DoesNotExist, a 500).",
                    hint="Set SITE_ID to the id of an existing Site (admin's Sites list, or "
                    "`manage.py shell`), or create the Site with that id.",
                    id="atlassian_oauth.W012",
                )
            ]
        condition = Q()
        for host in hosts:
            condition |= _host_condition(host)
        # Matching Sites first: the first row says whether any does, the rest name a few.
        rows = list(
            sites.annotate(
                matches=Case(
                    When(condition, then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            )
            .order_by("-matches", "domain")
            .values_list("domain", "matches")[:SITES_NAMED]
        )
    except (DatabaseError, ImproperlyConfigured, RuntimeError):
        # Not migrated yet or not reachable (`migrate` and the first query say so), or a test
        # that may not touch the database (pytest-django's blocker raises RuntimeError).
        return []
    if rows and rows[0][1]:
        return []
    served = ", ".join(hosts)
    served = (
        f"ALLOWED_HOSTS: {served}"
        if settings.ALLOWED_HOSTS
        else f"with DEBUG on and ALLOWED_HOSTS empty: {served}"
    )
    if rows:
        named = ", ".join(repr(domain) for domain, _ in rows[: SITES_NAMED - 1])
        found = f"the Sites are {named}{', ...' if len(rows) == SITES_NAMED else ''}"
    else:
        found = "there is no Site"
    return [
        Warning(
            f"SITE_ID is not set and no Site matches a host Django serves ({served}); "
            f"{found}. Each request looks up its Site by its host, so the app's pages, "
            "get_session(user, request) and, with CurrentSiteMiddleware, every request fail "
            "(Site.DoesNotExist, a 500).",
            hint="One site: set SITE_ID = 1 and change that Site's domain to your host (in "
            "admin, or `manage.py shell`). One site per tenant: create a Site for each tenant's "
            "domain. A Site matches an entry by its domain, port ignored; '.example.com' covers "
            "example.com and every domain under it, '*' any Site but example.com. Each host "
            "users visit needs its Site; this check speaks only when none has one.",
            id="atlassian_oauth.W011",
        )
    ]
