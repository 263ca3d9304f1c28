"""What application code calls: a ready ``requests.Session`` for a user's connection.

The session is a requests-oauthlib ``OAuth2Session`` (a ``requests.Session``), as in the
Atlassian guides written on requests-oauthlib: oauthlib adds the Bearer token to each request.

    from atlassian_oauth.api import get_session

    session = get_session(request.user, request.site)
    issues = session.get(session.jira_url("rest/api/3/search/jql"), params={"jql": "..."})

The session sends the connection's current access token, refreshes it first when it is about to
expire, and on a 401 refreshes once and retries once. Tokens never leave this module except
through ``get_access_token``, for code that brings its own HTTP client.

Every session sends through the connection pools of the process's one ``requests.Session``
(``client.http_session()``), so a connection to Atlassian is kept alive across sessions and
requests instead of opened per ``get_session()``. ``get_access_token()`` costs one query (the
grant's token columns); a session's request one more than ``get_session()``'s (the token as the
row has it then: a connection removed meanwhile is not used), none while the session keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn, cast

import requests
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sites.models import Site
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, ForeignKey, Model
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

# oauthlib ships no type hints (setup.cfg lets requests_oauthlib off the same way).
from oauthlib.oauth2 import InsecureTransportError
from requests_oauthlib import OAuth2Session

from . import client, refresh, resources
from .conf import SETTINGS_NAME, conf
from .exceptions import (
    AtlassianOAuthError,
    NotConnected,
    ReconnectRequired,
    SiteChoiceRequired,
    TemporarilyUnavailable,
)
from .models import Connection, Event, Grant, Resource

__all__ = [
    "AtlassianOAuthError",
    "AtlassianSession",
    "NotConnected",
    "ReconnectRequired",
    "SiteChoiceRequired",
    "TemporarilyUnavailable",
    "confluence_url",
    "get_access_token",
    "get_connection",
    "get_session",
    "jira_url",
]

#: Seconds of validity a token must have left before a request is sent with it.
REQUEST_MARGIN = 60.0


def jira_url(cloud_id: str, path: str = "") -> str:
    """``https://api.atlassian.com/ex/jira/{cloud_id}/{path}``: 3LO tokens only work there."""
    return f"{conf.API_BASE_URL}/ex/jira/{cloud_id}/{path.lstrip('/')}"


def confluence_url(cloud_id: str, path: str = "") -> str:
    """``https://api.atlassian.com/ex/confluence/{cloud_id}/{path}`` (e.g. ``wiki/api/v2/…``)."""
    return f"{conf.API_BASE_URL}/ex/confluence/{cloud_id}/{path.lstrip('/')}"


def _site(site: Site | HttpRequest | None) -> Site:
    """``site`` itself, the request's site, or SITE_ID's; a missing one is a configuration
    error that says how to fix it (checks W011 and W012 say so before the first request)."""
    if isinstance(site, Site):
        return site
    site_id = getattr(settings, "SITE_ID", "")  # as Site.objects.get_current() reads it
    try:
        if site_id or site is not None:
            return Site.objects.get_current(site)
    except Site.DoesNotExist:
        pass
    # Raised outside the handler: the cause is this message, not Django's bare DoesNotExist.
    if site_id:
        raise ImproperlyConfigured(
            f"settings.SITE_ID is {site_id!r}, but no Site has that id: set SITE_ID to the id "
            "of an existing Site (admin's Sites list, or `manage.py shell`), or create it."
        )
    if site is None:
        raise ImproperlyConfigured(
            "Without a site, get_session(), get_connection() and get_access_token() need "
            "settings.SITE_ID: pass the request or the Site, or set SITE_ID = 1 and change that "
            "Site's domain (in admin, or `manage.py shell`)."
        )
    raise ImproperlyConfigured(
        f"No Site matches this request's host {site.get_host()!r} (a Site's domain, port "
        "ignored) and settings.SITE_ID is not set: create a Site with that domain (one per "
        "tenant domain), or, for one site only, set SITE_ID = 1 and change that Site's domain "
        "(in admin, or `manage.py shell`)."
    )


def get_connection(
    user: AbstractBaseUser | AnonymousUser, site: Site | HttpRequest | None = None
) -> Connection:
    """The user's own connection on ``site`` (a Site, the request, or None for SITE_ID)."""
    if not user.is_authenticated:
        raise NotConnected("An anonymous user has no Atlassian connection.")
    tenant = _site(site)
    connection = _connection_row(user.pk, tenant)
    if connection is None:
        raise NotConnected(f"This user has not connected Atlassian on {tenant.domain}.")
    return connection


# get_connection() is on the path of every get_session(): its query is built once per database
# from the models' metadata (the ORM compiled the five-table select_related at every call, most
# of a session's overhead), and its row turned into the instances as the ORM would: each
# column through the backend's and the field's converters, then Model.from_db.


@dataclass(frozen=True)
class _Part:
    """The columns of one model in the connection's row, and how each is converted."""

    model: type[Model]
    attnames: list[str]
    converters: list[tuple[Any, list[Any]]]


_connection_statements: dict[str, tuple[str, list[_Part]]] = {}


def _connection_statement(db: BaseDatabaseWrapper) -> tuple[str, list[_Part]]:
    statement = _connection_statements.get(db.alias)
    if statement is not None:
        return statement
    quote = db.ops.quote_name

    def column(model: type[Model], name: str) -> str:
        return quote(str(cast("Field[Any, Any]", model._meta.get_field(name)).column))

    # (model, alias): the connection, its grant, its default Jira and Confluence sites.
    tables = [(Connection, "c"), (Grant, "g"), (Resource, "j"), (Resource, "f")]
    parts, columns = [], []
    for model, alias in tables:
        fields = model._meta.concrete_fields
        columns += [f"{alias}.{quote(str(field.column))}" for field in fields]
        converters = []
        for field in fields:
            col = field.get_col(model._meta.db_table)
            functions = [*db.ops.get_db_converters(col), *field.get_db_converters(db)]
            converters.append((col, functions))
        parts.append(_Part(model, [field.attname for field in fields], converters))
    pk = column(Resource, "id")
    # Names from the models' metadata, quoted by the backend; the values are parameters. No
    # ORDER BY: the (user, site) pair is unique. The site is the caller's: no join.
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(Connection._meta.db_table)} c "  # noqa: S608
        f"INNER JOIN {quote(Grant._meta.db_table)} g "
        f"ON g.{column(Grant, 'id')} = c.{column(Connection, 'grant')} "
        f"LEFT OUTER JOIN {quote(Resource._meta.db_table)} j "
        f"ON j.{pk} = c.{column(Connection, 'jira_resource')} "
        f"LEFT OUTER JOIN {quote(Resource._meta.db_table)} f "
        f"ON f.{pk} = c.{column(Connection, 'confluence_resource')} "
        f"WHERE c.{column(Connection, 'user')} = %s AND c.{column(Connection, 'site')} = %s"
    )
    statement = _connection_statements[db.alias] = (sql, parts)
    return statement


def _connection_row(user_id: Any, site: Site) -> Connection | None:
    """The (user, site) connection with its grant, site and default sites loaded; None if none."""
    db = connections[router.db_for_read(Connection)]
    sql, parts = _connection_statement(db)
    user_field = cast("Field[Any, Any]", Connection._meta.get_field("user"))
    with db.cursor() as cursor:
        cursor.execute(sql, [user_field.get_db_prep_value(user_id, db), site.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    instances: list[Model | None] = []
    start = 0
    for part in parts:
        end = start + len(part.attnames)
        values = []
        for (col, functions), value in zip(part.converters, row[start:end], strict=True):
            for convert in functions:
                value = convert(value, col, db)
            values.append(value)
        start = end
        # A left join that found no site: every column NULL, the primary key too.
        instances.append(
            part.model.from_db(db.alias, part.attnames, values) if values[0] is not None else None
        )
    connection, grant, jira, confluence = instances
    assert isinstance(connection, Connection)  # noqa: S101  (the row's first part, never NULL)
    for name, related in (
        ("grant", grant),
        ("site", site),
        ("jira_resource", jira),
        ("confluence_resource", confluence),
    ):
        cast(ForeignKey[Any, Any], Connection._meta.get_field(name)).set_cached_value(
            connection, related
        )
    return connection


def _fresh(grant_id: int, *, margin: float, stale_version: int | None = None) -> refresh.FreshToken:
    if stale_version is None:
        # The common case in one narrow read (the row as it is now: a grant disconnected since
        # the session was made is gone); only a token that is due goes the refresh path.
        grant = refresh.token_row(grant_id)
        if grant is None:
            raise NotConnected("The connection was removed.")
        token = refresh.current_token(grant, margin)
        if token is not None:
            return token
    try:
        return refresh.ensure_fresh(
            grant_id, actor=Event.Actor.APPLICATION, margin=margin, stale_version=stale_version
        )
    except TemporarilyUnavailable:
        # A failed refresh never costs a token that still works (a 401'd one excepted).
        still_valid = None if stale_version is not None else refresh.still_valid_token(grant_id)
        if still_valid is not None:
            return still_valid
        raise
    except Grant.DoesNotExist as error:
        raise NotConnected("The connection was removed.") from error


def get_access_token(
    user: AbstractBaseUser | AnonymousUser, site: Site | HttpRequest | None = None
) -> str:
    """A current access token of the user's connection, refreshed first if about to expire."""
    if not user.is_authenticated:
        raise NotConnected("An anonymous user has no Atlassian connection.")
    tenant = _site(site)
    # One query for the common case: the connection's grant, the columns a fresh token needs
    # (no ORDER BY: the (user, site) pair is unique).
    grant = refresh.connected_token_row(user.pk, tenant.pk)
    if grant is None:
        raise NotConnected(f"This user has not connected Atlassian on {tenant.domain}.")
    token = refresh.current_token(grant, REQUEST_MARGIN)
    if token is None:
        token = _fresh(grant.pk, margin=REQUEST_MARGIN)
    return token.access_token


class AtlassianSession(OAuth2Session):  # type: ignore[misc]  # requests-oauthlib is untyped
    """An ``OAuth2Session`` bound to one connection's grant.

    ``request()`` (and so ``get()``, ``post()`` …) refreshes the token first when it is about to
    expire and, on a 401, refreshes once and retries once, always through the app's single-flight
    refresh (refresh.py): the session's own ``refresh_token()`` and ``fetch_token()`` refuse, and
    no ``auto_refresh_url`` is ever set, since a second refresher would spend the rotating
    refresh token under the app's feet.
    """

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection.grant.client_id)
        self.connection = connection
        self.headers["Accept"] = "application/json"
        self.headers["User-Agent"] = client.USER_AGENT
        # The process's connection pools (thread-safe, as requests' HTTPAdapter is): a kept-alive
        # connection to Atlassian serves every session, instead of a new one per get_session().
        for prefix, adapter in client.http_session().adapters.items():
            self.mount(prefix, adapter)
        self._fresh_token: refresh.FreshToken | None = None
        self._resources: list[Resource] | None = None

    def __repr__(self) -> str:
        return f"<AtlassianSession connection={self.connection.pk}>"

    def close(self) -> None:
        """Nothing to close: the connection pools are the process's, shared by every session
        (``client.reset_session()`` closes them)."""

    @property
    def resources(self) -> list[Resource]:
        """The connection's Atlassian sites, read once per session."""
        if self._resources is None:
            self._resources = list(self.connection.grant.resources.all())
        return self._resources

    def default_site(self, product: str = "jira") -> Resource:
        """The connection's default site for ``product`` ("jira", "confluence"): the one the
        user chose on the status page, or the only one the account reaches. Raises
        ``SiteChoiceRequired`` when the user has to choose first (several sites, or the chosen
        one is gone: send them to the status page), ``NotConnected`` when there is none."""
        return resources.site_to_use(self.connection, product, lambda: self.resources)

    def default_cloud_id(self, product: str = "jira") -> str:
        """The cloud id of ``default_site(product)``."""
        return self.default_site(product).cloud_id

    def jira_url(self, path: str = "", cloud_id: str | None = None) -> str:
        """``path`` under the default Jira site's gateway URL (or ``cloud_id``'s); raises as
        ``default_site`` does."""
        return jira_url(cloud_id or self.default_cloud_id("jira"), path)

    def confluence_url(self, path: str = "", cloud_id: str | None = None) -> str:
        return confluence_url(cloud_id or self.default_cloud_id("confluence"), path)

    def refresh_token(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            "An AtlassianSession refreshes through the app's single-flight refresh only "
            "(atlassian_oauth.refresh); it never refreshes on its own."
        )

    def fetch_token(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            "An AtlassianSession's tokens come from the connection; connect through the app's "
            "views (atlassian_oauth.connect)."
        )

    def _current_token(self) -> refresh.FreshToken:
        if self._fresh_token is None or not self._fresh_token.valid_for(REQUEST_MARGIN):
            self._fresh_token = _fresh(self.connection.grant_id, margin=REQUEST_MARGIN)
        return self._fresh_token

    @sensitive_variables("token", "kwargs")
    def request(  # keyword arguments only, as Session.get() & co. pass
        self, method: str | bytes, url: str | bytes, **kwargs: Any
    ) -> requests.Response:
        gateway = f"{conf.API_BASE_URL}/"
        if not str(url).startswith(gateway):
            # The token must never follow a URL out of Atlassian's API (say, one found in an
            # issue's data): refuse rather than send it, or silently send nothing.
            raise ValueError(f"An AtlassianSession only sends requests under {gateway}")
        kwargs.setdefault("timeout", conf.HTTP_TIMEOUT)
        token = self._current_token()
        response = self._send(token, method, url, **kwargs)
        if response.status_code != 401:
            return response
        # Atlassian can revoke an access token before its expires_in (after a rotation's grace
        # period): refresh once, unless someone already has, and try once more.
        response.close()
        self._fresh_token = _fresh(
            self.connection.grant_id, margin=REQUEST_MARGIN, stale_version=token.version
        )
        return self._send(self._fresh_token, method, url, **kwargs)

    # Bare: every variable here and in the frames below (requests-oauthlib's, oauthlib's,
    # requests', holding the Authorization header) is hidden from error reports.
    @sensitive_variables()
    def _send(
        self, token: refresh.FreshToken, method: str | bytes, url: str | bytes, **kwargs: Any
    ) -> requests.Response:
        # A copy: oauthlib writes the Authorization header into the dict it is given, which
        # must not be the caller's (nor hold a stale token on the retry).
        headers = {
            name: value
            for name, value in (kwargs.pop("headers", None) or {}).items()
            if name.lower() != "authorization"
        }
        # No expires_at: the app decides when a token is due (above), not oauthlib.
        self.token = {"access_token": token.access_token, "token_type": "Bearer"}
        try:
            return super().request(method, url, headers=headers, **kwargs)  # type: ignore[no-any-return]
        except InsecureTransportError:
            pass
        # Raised outside the handler, so oauthlib's exception and its frames stay behind.
        raise ImproperlyConfigured(
            f"{SETTINGS_NAME}['API_BASE_URL']: "
            + client.INSECURE_TRANSPORT.format(url=conf.API_BASE_URL)
        )


def get_session(
    user: AbstractBaseUser | AnonymousUser, site: Site | HttpRequest | None = None
) -> AtlassianSession:
    """A session for the user's own connection on ``site``; raises ``NotConnected`` if none."""
    return AtlassianSession(get_connection(user, site))
