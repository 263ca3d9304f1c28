"""The connection lifecycle: start the consent round trip, finish it, disconnect.

Views call these functions and turn ``ConnectFailed`` into a message; nothing here knows HTTP
requests beyond the session it is handed.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, cast
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sites.models import Site
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Q
from django.http.request import split_domain_port
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from . import client
from . import resources as sites
from .conf import conf
from .events import emit
from .health import configured_scopes, product_name
from .models import AuthorizationState, Connection, Event, Grant
from .oauth_apps import app_for_site

logger = logging.getLogger(__name__)

SESSION_BINDING_KEY = "_atlassian_oauth_binding"
CONNECTED_APPS_URL = "https://id.atlassian.com/manage-profile/apps"
# Longest Atlassian `error` text we repeat back to the user.
MAX_SHOWN_ERROR = 80
#: Consent round trips one user may have pending; starting another drops the
#: oldest, so repeated clicks (or a script) cannot grow the table without bound.
MAX_PENDING_FLOWS = 5


class ConnectFailed(Exception):
    """The round trip cannot complete; ``str()`` is a message for the user, safe to show."""


@dataclass(frozen=True)
class Connected:
    connection: Connection
    created: bool
    next_url: str
    missing_refresh_token: bool


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def begin(
    *,
    user: AbstractBaseUser,
    site: Site,
    session: SessionBase,
    redirect_uri: str,
    next_url: str = "",
) -> str:
    """Remember a one-time state for this browser, user, site and app; return the consent URL.

    ``next_url`` must already be checked as safe. Several flows (tabs) may be pending at once.
    """
    app = app_for_site(site)
    redirect_uri = registered_callback(app) or redirect_uri
    binding = session.get(SESSION_BINDING_KEY)
    if not binding:
        binding = session[SESSION_BINDING_KEY] = secrets.token_urlsafe(32)
    state = secrets.token_urlsafe(32)  # 256 random bits
    now = timezone.now()
    AuthorizationState.objects.filter(expires_at__lt=now).delete()
    AuthorizationState.objects.create(
        state_hash=_digest(state),
        session_binding_hash=_digest(binding),
        user_id=user.pk,
        site=site,
        client_id=app.client_id,
        redirect_uri=redirect_uri,
        next_url=next_url,
        expires_at=now + timedelta(seconds=conf.STATE_MAX_AGE),
    )
    _drop_oldest_flows(user.pk)
    return client.authorize_url(app, redirect_uri, state)


def registered_callback(app: client.OAuthApp) -> str:
    """The callback URL registered for ``app`` when it is fixed ("": built from the host).

    The connect host serves the default app (``CLIENT_ID``); a site's own app keeps the
    callback URL of its row, or its own host's.
    """
    if app.callback_url:
        return app.callback_url
    if conf.CONNECT_HOST_CALLBACK_URL and app.client_id == conf.CLIENT_ID:
        return conf.CONNECT_HOST_CALLBACK_URL
    return ""


def _drop_oldest_flows(user_id: Any) -> None:
    """Keep the newest ``MAX_PENDING_FLOWS`` flows of this user and delete the rest.

    Per user is also per browser: a session holds one user (logging in as another flushes it).
    """
    mine = AuthorizationState.objects.filter(user_id=user_id)
    stale = list(
        mine.order_by("-created_at", "-pk").values_list("pk", flat=True)[MAX_PENDING_FLOWS:]
    )
    if stale:
        AuthorizationState.objects.filter(pk__in=stale).delete()


@dataclass(frozen=True)
class Bounce:
    """The connect host's answer to a callback: send the browser on to ``location`` or, when
    there is none, refuse with a page saying why (``reason``)."""

    location: str = ""
    reason: str = ""


#: Why the connect host refuses to hand a callback on.
UNKNOWN_STATE = "unknown_state"
INSECURE = "insecure"


def _host_key(netloc: str, secure: bool) -> str:
    """A host as compared here: lower case, without a trailing dot or its scheme's own port;
    "" when it is not a plain host name or address (with a port)."""
    host, port = split_domain_port(netloc)
    if not host:
        return ""
    return host if port in ("", "443" if secure else "80") else f"{host}:{port}"


def _is_site_of(site: Site, host: str) -> bool:
    """Whether the sites framework finds ``site`` for ``host`` (with its port, or without)."""
    domain = site.domain.lower()
    return domain in (host.lower(), split_domain_port(host)[0])


@sensitive_variables()
def bounce(*, host: str, secure: bool, state: str, path: str, query: str) -> Bounce | None:
    """Where the callback at ``host`` hands a flow on to; None when it is not the connect
    host's to hand on (the callback then runs where it is, with all its checks).

    The target is the pending flow's own site, never anything of the request: the same
    ``path`` and ``query`` on that site's domain (with the connect host's port when the domain
    names none), https unless ``DEBUG`` is on. Nothing is consumed: the tenant's callback
    checks the session binding, user, site and single use as always.
    """
    registered = conf.CONNECT_HOST_CALLBACK_URL
    if not registered:
        return None
    parts = urlsplit(registered)
    here = _host_key(host, secure)
    if not here or here != _host_key(parts.netloc, parts.scheme == "https"):
        return None
    pending = None
    if state:
        pending = (
            AuthorizationState.objects.select_related("site")
            .filter(state_hash=_digest(state), redirect_uri=registered)
            .first()
        )
    if pending is None:
        # The connect host may be a tenant too: its own callback answers its users there.
        bare = split_domain_port(host)[0]
        if Site.objects.filter(Q(domain__iexact=host) | Q(domain__iexact=bare)).exists():
            return None
        return Bounce(reason=UNKNOWN_STATE)
    if _is_site_of(pending.site, host):
        return None
    if not secure and not settings.DEBUG:
        return Bounce(reason=INSECURE)
    domain = pending.site.domain
    if not _host_key(domain, secure=True):
        # A Site whose domain is no plain host (an admin's typo) is never a redirect target.
        logger.error("Site %s has no valid domain to hand a connection back to.", pending.site_id)
        return Bounce(reason=UNKNOWN_STATE)
    if not split_domain_port(domain)[1] and parts.port:
        domain = f"{domain}:{parts.port}"
    scheme = "http" if settings.DEBUG and not secure else "https"
    return Bounce(location=urlunsplit((scheme, domain, path, query, "")))


# The callback's parameters hold the code, and the token response the new tokens: no variable
# of this frame, nor of anything it calls, goes into an error report.
@sensitive_variables()
def complete(
    *,
    user: AbstractBaseUser,
    site: Site,
    session: SessionBase,
    params: Mapping[str, str],
) -> Connected:
    """Check the callback's state, exchange its code, and store grant, connection and sites."""
    pending = _consume_state(user=user, site=site, session=session, state=params.get("state", ""))
    error = params.get("error", "")
    if error:
        if error == "access_denied":
            _fail(
                user,
                site,
                "declined",
                _("You declined access, so %(product)s is not connected.")
                % {"product": product_name(configured_scopes(site))},
            )
        shown = error[:MAX_SHOWN_ERROR]
        _fail(
            user,
            site,
            "authorize_error",
            _("Atlassian did not grant access (%(error)s). Please try again.") % {"error": shown},
            error=shown,
        )
    code = params.get("code", "")
    if not code:
        _fail(user, site, "missing_code", _("Atlassian sent no authorization code. Connect again."))

    try:
        app = app_for_site(site)
    except ImproperlyConfigured as exc:
        logger.error("Connect failed on %s: %s", site.domain, exc)
        _fail(
            user,
            site,
            "configuration",
            _("%(product)s connections are not configured on this site.")
            % {"product": product_name(configured_scopes(site))},
        )
    if app.client_id != pending.client_id:
        _fail(
            user,
            site,
            "app_changed",
            _("This site's Atlassian app changed while you were at Atlassian. Connect again."),
        )
    try:
        tokens = client.exchange_code(app, code, pending.redirect_uri)
        profile = client.me(tokens.access_token)
        resources = client.accessible_resources(tokens.access_token)
    except (client.InvalidCode, client.InvalidGrant) as exc:
        # Atlassian documents invalid_request for a bad code; plain OAuth servers say
        # invalid_grant. Either way the code is spent: start again.
        _fail(
            user,
            site,
            "invalid_code",
            _("This connection attempt took too long or was already used. Connect again."),
            error=str(exc),
        )
    except client.ClientConfigurationError as exc:
        logger.error("Atlassian refused the client credentials of %s: %s", site.domain, exc)
        _fail(
            user,
            site,
            "configuration",
            _(
                "Atlassian refused this site's app credentials. An administrator has to fix "
                "them; please try again later."
            ),
            error=str(exc),
        )
    except client.AtlassianError as exc:
        _fail(
            user,
            site,
            "atlassian_error",
            _(
                "Atlassian could not be reached or answered unexpectedly. Please try again "
                "in a moment."
            ),
            error=str(exc),
        )

    save = (user, site, app.client_id, tokens, profile, resources)
    try:
        connection, created = _save_connection(*save)
    except IntegrityError:
        # Another callback inserted this account's grant, or this user's connection on this
        # site, after our read found none (a second tab finishing at the same moment): its
        # transaction has committed, so the second try finds the row and updates it instead.
        connection, created = _save_connection(*save)
    return Connected(
        connection=connection,
        created=created,
        next_url=pending.next_url,
        missing_refresh_token=tokens.refresh_token is None,
    )


def _consume_state(
    *, user: AbstractBaseUser, site: Site, session: SessionBase, state: str
) -> AuthorizationState:
    """The pending flow this state names, deleted so it can never be used again."""
    if not state:
        _fail(
            user,
            site,
            "missing_state",
            _("Atlassian's answer is incomplete. Connect again."),
        )
    binding = session.get(SESSION_BINDING_KEY, "")
    pending = _take_pending(state, binding, user, site) if binding else None
    if pending is None:
        # Unknown, already used, or started by another browser, user or site: never consumed
        # here, so a stranger's state cannot cancel the rightful owner's flow.
        _fail(
            user,
            site,
            "invalid_state",
            _("This connection attempt expired or was started in another browser. Connect again."),
        )
    if pending.expires_at < timezone.now():
        _fail(
            user,
            site,
            "expired_state",
            _("This connection attempt took too long and expired. Connect again."),
        )
    return pending


def _take_pending(
    state: str, binding: str, user: AbstractBaseUser, site: Site
) -> AuthorizationState | None:
    """Delete the pending flow this state names if this browser (its session binding), user
    and site started it, and return it; None when there is no such flow.

    The delete is the single-use guard: of two concurrent callbacks only one deletes the row.
    One ``DELETE ... RETURNING`` where the database has it (the hashes compared by the
    database: they are digests of secrets, so timing tells nothing about either secret).
    """
    mine = {
        "state_hash": _digest(state),
        "session_binding_hash": _digest(binding),
        "user": user.pk,
        "site": site.pk,
    }
    db = connections[router.db_for_write(AuthorizationState)]
    if not _deletes_return_rows(db):
        pending = AuthorizationState.objects.filter(**mine).first()
        if pending is None:
            return None
        deleted, _rows = AuthorizationState.objects.filter(pk=pending.pk).delete()
        if not deleted:
            _fail(
                user,
                site,
                "invalid_state",
                _("This connection attempt was already used. Connect again."),
            )
        return pending
    meta = AuthorizationState._meta
    quote = db.ops.quote_name
    fields = meta.concrete_fields
    conditions, params = [], []
    for name, value in mine.items():
        field = cast("Field[Any, Any]", meta.get_field(name))
        conditions.append(f"{quote(str(field.column))} = %s")
        params.append(field.get_db_prep_value(value, db))
    # Names from the model's metadata, quoted by the backend; values are parameters.
    sql = (
        f"DELETE FROM {quote(meta.db_table)} WHERE {' AND '.join(conditions)} "  # noqa: S608
        f"RETURNING {', '.join(quote(str(field.column)) for field in fields)}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for field, value in zip(fields, row, strict=True):
        # As a SELECT converts them: the backend's converters (SQLite's datetimes), the field's.
        column = field.get_col(meta.db_table)
        for convert in (*db.ops.get_db_converters(column), *field.get_db_converters(db)):
            value = convert(value, column, db)
        values.append(value)
    return AuthorizationState.from_db(db.alias, [field.attname for field in fields], values)


def _deletes_return_rows(db: BaseDatabaseWrapper) -> bool:
    # PostgreSQL has DELETE ... RETURNING, SQLite since 3.35; MySQL not (MariaDB does, but
    # Django's backend is the same for both: the two-query path is right for each).
    if db.vendor == "postgresql":
        return True
    return db.vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)


def _fail(
    user: AbstractBaseUser, site: Site, reason: str, message: str, error: str = ""
) -> NoReturn:
    emit(
        Event.Kind.CONNECT_FAILED,
        actor=Event.Actor.USER,
        user=user,
        site=site,
        message=f"Connect failed: {reason}",
        collapse=True,  # a reloaded or replayed callback adds to a count, not a row
        details={"reason": reason, "error": error},
        arguments={"user": user, "site": site, "reason": reason},
    )
    raise ConnectFailed(message)


@transaction.atomic
@sensitive_variables()
def _save_connection(
    user: AbstractBaseUser,
    site: Site,
    client_id: str,
    tokens: client.TokenResponse,
    profile: client.Profile,
    resources: list[client.AccessibleResource],
) -> tuple[Connection, bool]:
    now = timezone.now()
    has_refresh_token = tokens.refresh_token is not None
    token_fields = {
        "account_name": profile.name,
        "account_email": profile.email,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "access_token_expires_at": now + timedelta(seconds=tokens.expires_in),
        "scopes": " ".join(tokens.scopes),
        "status": Grant.Status.ACTIVE if has_refresh_token else Grant.Status.NO_REFRESH_TOKEN,
        "consented_at": now,
        "refresh_token_issued_at": now if has_refresh_token else None,
        # A reconnect starts the grant afresh: no renewal of the consent it replaces is shown.
        "last_refreshed_at": None,
        "next_refresh_at": None,
        "refresh_failures": 0,
        "last_error": "" if has_refresh_token else "no_refresh_token",
        "last_failure": Grant.Failure.NONE,
        "state_changed_at": now,
        "resources_synced_at": now,  # store() below reads them, in this transaction
    }
    # One row per (app, account): a reconnect, or the same account from another user or site,
    # updates the one grant in place, so two copies of a refresh token never exist. Held for
    # update to the end: the daily sync stores the grant's sites under the same lock. (No
    # savepoint around the inserts: complete() runs this again if another callback won one.)
    grant = (
        Grant.objects.select_for_update()
        .filter(client_id=client_id, account_id=profile.account_id)
        .first()
    )
    if grant is None:
        grant = Grant.objects.create(
            client_id=client_id, account_id=profile.account_id, **token_fields
        )
    else:
        for name, value in token_fields.items():
            setattr(grant, name, value)
        grant.version += 1
        grant.save()

    previous = Connection.objects.select_for_update().filter(user_id=user.pk, site=site).first()
    if previous is None:
        connection = Connection.objects.create(user_id=user.pk, site=site, grant=grant)
    else:
        old_grant_id = previous.grant_id
        previous.grant = grant
        if old_grant_id != grant.pk:
            # Another Atlassian account: the sites chosen were the old grant's.
            sites.forget_defaults(previous)
        previous.save()
        connection = previous
        if old_grant_id != grant.pk:
            sites.drop_unchosen_removed(old_grant_id)
            Grant.objects.filter(pk=old_grant_id).delete_unused()
    created = previous is None
    # The same function the daily sync stores with: a site keeps its row, and so a connection
    # keeps its chosen site, across reconnects. After the connection points at the grant, so
    # that the grant's only Jira (Confluence) site, if it has exactly one, becomes this
    # connection's default too, in the same step as for the grant's other connections.
    sites.store(grant, resources, now=now, connection=connection, save_synced_at=False)

    message = f"Connected Atlassian account {profile.account_id}"
    if not has_refresh_token:
        message += " without a refresh token (offline_access was not granted)"
    emit(
        Event.Kind.CONNECTED,
        actor=Event.Actor.USER,
        user=user,
        site=site,
        grant=grant,
        message=message,
        details={
            "reconnect": not created,
            "refresh_token": has_refresh_token,
            "sites": len(resources),
        },
        arguments={"connection": connection, "grant": grant, "created": created},
    )
    return connection, created


#: Who is disconnecting, for the delete receiver's event; unset for any other deletion.
_disconnecting: ContextVar[Event.Actor | None] = ContextVar(
    "atlassian_oauth_disconnecting", default=None
)


def disconnect(connection: Connection, *, actor: Event.Actor) -> bool:
    """Remove a connection (and its grant when unused); True when the grant's tokens are gone."""
    grant_id = connection.grant_id
    token = _disconnecting.set(actor)
    try:
        connection.delete()  # connection_deleted logs it and removes the grant if now unused
    finally:
        _disconnecting.reset(token)
    return not Grant.objects.filter(pk=grant_id).exists()


def connection_deleted(
    sender: type[Connection], instance: Connection, origin: object = None, **kwargs: Any
) -> None:
    """However a connection goes (disconnect, its user, site or grant deleted), an unused grant
    goes too, and the event log and ``disconnected`` signal say so, once."""
    account_id = (
        Grant.objects.filter(pk=instance.grant_id).values_list("account_id", flat=True).first()
        or ""
    )
    grant_deleted = Grant.objects.filter(pk=instance.grant_id).delete_unused() > 0
    user, site = instance.user, instance.site
    arguments = {
        "user": user,
        "site": site,
        "account_id": account_id,
        "grant_deleted": grant_deleted,
    }
    if isinstance(origin, Connection):  # disconnect(), or code deleting this one connection
        emit(
            Event.Kind.DISCONNECTED,
            actor=_disconnecting.get() or Event.Actor.SYSTEM,
            user=user,
            site=site,
            grant=None if grant_deleted else instance.grant,
            account_id=account_id,
            message=f"Disconnected Atlassian account {account_id}"
            + (" and deleted its tokens" if grant_deleted else ""),
            details={"grant_deleted": grant_deleted},
            arguments=arguments,
        )
        return
    # A cascade: the user or site may be on its way out in this same delete, so the event
    # keeps their ids in its details rather than foreign keys to rows about to vanish.
    emit(
        Event.Kind.DISCONNECTED,
        actor=Event.Actor.SYSTEM,
        account_id=account_id,
        message="Connection removed because its user, site or grant was deleted"
        + (" (the grant's tokens too)" if grant_deleted else ""),
        details={
            "user_id": instance.user_id,
            "site_id": instance.site_id,
            "grant_deleted": grant_deleted,
        },
        arguments=arguments,
    )
