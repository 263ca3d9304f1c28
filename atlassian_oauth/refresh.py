"""The one refresh path: every caller that needs a fresh access token comes through here.

At most one refresh of a grant is in flight anywhere. A worker claims the grant with a
compare-and-swap UPDATE on its lease columns (atomic on SQLite, PostgreSQL and MariaDB alike, and
across processes and hosts) that also reads the row back (``RETURNING``, where the database has
it; a second query elsewhere), and only then calls Atlassian, with no database transaction open.
The rotated tokens are written, and the lease released, by a second compare-and-swap that also
checks the version it read, so a worker whose lease ran out cannot overwrite a newer token.
Everyone else waits for the version to change and returns the token the winner stored. A routine
refresh costs three queries: the caller's read, the claim, the write.

A routine refresh (the beat's or application code's, of a healthy grant) writes no event row:
``last_refreshed_at`` and ``version`` say when and how often; the ``refreshed`` signal fires all
the same. A refresh that changes the grant's state (a failing grant recovering), that keeps an
old refresh token (Atlassian sent none), or that a person asked for (admin, command) writes one.

A worker that dies after Atlassian rotated the token but before storing it leaves the old
refresh token in the row and a lease that expires after ``REFRESH_LOCK_TIMEOUT``; the next
attempt presents the old token, which Atlassian accepts within its 10-minute reuse leeway.
"""

from __future__ import annotations

import logging
import random
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, ExpressionWrapper, Field, Q, QuerySet
from django.db.models.functions import Now
from django.db.models.sql import UpdateQuery
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import client
from .conf import conf
from .events import emit
from .exceptions import ReconnectRequired, TemporarilyUnavailable
from .models import RECENT_REFRESH, Connection, Event, Grant
from .oauth_apps import app_for_client_id

logger = logging.getLogger(__name__)

#: How often a waiting caller looks at the row again.
POLL_INTERVAL = 0.05
#: A token refreshed this recently is not refreshed again while valid (``models.RECENT_REFRESH``).
MIN_FORCED_REFRESH_INTERVAL = RECENT_REFRESH.total_seconds()
DEAD_GRANT = "Atlassian no longer accepts this grant; reconnect."
NO_OFFLINE_ACCESS = "The grant has no refresh token (offline_access missing)."
#: Failures worth a backoff that long, whatever the count says: an admin has to act.
CONFIGURATION_BACKOFF = 3600.0
#: Who a refresh is recorded for in the event log even when it changes no state.
PEOPLE = frozenset({Event.Actor.USER, Event.Actor.ADMIN, Event.Actor.COMMAND})


@dataclass(frozen=True)
class FreshToken:
    access_token: str = field(repr=False)
    expires_at: datetime
    version: int
    #: This call renewed it at Atlassian (not another worker whose refresh it waited for).
    renewed: bool = False

    def valid_for(self, seconds: float) -> bool:
        return (self.expires_at - timezone.now()).total_seconds() > seconds


def is_fresh(grant: Grant, margin: float, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return grant.access_token_expires_at - timedelta(seconds=margin) > now


def backoff_seconds(failures: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter after ``failures`` failures, never below Retry-After."""
    ceiling = min(conf.RETRY_BACKOFF_MAX, conf.RETRY_BACKOFF * 2.0 ** max(0, failures - 1))
    # "Equal jitter": at least half the step, so retries spread out but still back off.
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311  (not for secrets)
    return max(delay, retry_after or 0.0)


def current_token(grant: Grant, margin: float, now: datetime | None = None) -> FreshToken | None:
    """The stored access token when it needs no refresh for ``margin`` seconds, else None;
    raises ``ReconnectRequired`` for a dead grant. Reads only ``uuid``, ``access_token``,
    ``access_token_expires_at``, ``version``, ``status`` and ``last_refreshed_at``."""
    if grant.status == Grant.Status.NEEDS_RECONNECT:
        raise ReconnectRequired(DEAD_GRANT)
    return _token_of(grant) if _fresh_enough(grant, margin, now) else None


#: The columns ``current_token`` reads (``uuid`` binds the access token's ciphertext).
TOKEN_FIELDS = (
    "uuid",
    "access_token",
    "access_token_expires_at",
    "version",
    "status",
    "last_refreshed_at",
)


def token_row(grant_id: int) -> Grant | None:
    """The grant with the columns ``current_token`` reads, in one query; None if it is gone."""
    return read_grant(grant_id, TOKEN_FIELDS)


def ensure_fresh(
    grant_id: int,
    *,
    actor: Event.Actor,
    margin: float | None = None,
    stale_version: int | None = None,
    wait: float | None = None,
    force: bool = False,
    grant: Grant | None = None,
) -> FreshToken:
    """An access token of the grant valid for at least ``margin`` seconds, refreshing if needed.

    ``stale_version``: the caller saw this version's token fail (a 401); refresh unless the row
    has moved past it. ``force``: refresh now, however fresh the token, however recently it was
    renewed and even while backing off after a failure (an operator asked); still under the
    lease, so a refresh another worker finishes first is the answer instead. ``grant``: the row
    as the caller just read it (every column), saving the first read. Raises
    ``ReconnectRequired``, ``TemporarilyUnavailable`` or ``Grant.DoesNotExist``.
    """
    margin = conf.REFRESH_MARGIN if margin is None else margin
    deadline = time.monotonic() + (conf.REFRESH_WAIT if wait is None else wait)
    loaded = grant
    while True:
        grant = loaded if loaded is not None else read_grant(grant_id)
        loaded = None
        if grant is None:
            raise Grant.DoesNotExist(f"Grant {grant_id} does not exist.")
        now = timezone.now()
        if force and stale_version is None:
            # "Refresh unless someone moves past what we saw first": once, never twice at once.
            stale_version = grant.version
        if grant.status == Grant.Status.NEEDS_RECONNECT:
            raise ReconnectRequired(DEAD_GRANT)
        if stale_version is not None:
            # Nobody replaced the failed token; but a token renewed a moment ago that still
            # fails is not the token's fault (a scope the endpoint wants, say): don't rotate
            # on every such call.
            needs_refresh = grant.version == stale_version and (
                force or not _just_refreshed(grant, now)
            )
        else:
            needs_refresh = not _fresh_enough(grant, margin, now)
        if not needs_refresh:
            return _token_of(grant)
        if grant.status == Grant.Status.NO_REFRESH_TOKEN:
            if is_fresh(grant, 0, now) and stale_version is None:
                return _token_of(grant)
            raise ReconnectRequired(NO_OFFLINE_ACCESS)
        if not force and grant.next_refresh_at and grant.next_refresh_at > now:
            # Backing off after a failure: the current token while it lasts, else wait.
            if is_fresh(grant, 0, now) and stale_version is None:
                return _token_of(grant)
            retry = (grant.next_refresh_at - now).total_seconds()
            raise TemporarilyUnavailable("Refreshing is backing off after a failure.", retry)
        lease = _claim(grant.pk)
        if lease is not None:
            return _refresh_claimed(lease, actor=actor, margin=margin, stale_version=stale_version)
        if time.monotonic() >= deadline:
            if is_fresh(grant, 0, now) and stale_version is None:
                return _token_of(grant)
            raise TemporarilyUnavailable("Another worker's refresh is taking too long.", 1.0)
        time.sleep(POLL_INTERVAL * random.uniform(0.5, 1.5))  # noqa: S311


def _fresh_enough(grant: Grant, margin: float, now: datetime | None = None) -> bool:
    """Valid for ``margin`` more seconds; or, for a token that lives less than the margin,
    valid and renewed within the last minute (else every call would refresh it)."""
    now = now or timezone.now()
    return is_fresh(grant, margin, now) or (is_fresh(grant, 0, now) and _just_refreshed(grant, now))


def _just_refreshed(grant: Grant, now: datetime) -> bool:
    recent = now - timedelta(seconds=MIN_FORCED_REFRESH_INTERVAL)
    return grant.last_refreshed_at is not None and grant.last_refreshed_at > recent


def still_valid_token(grant_id: int) -> FreshToken | None:
    """The stored access token if it has not expired yet: what to use when a refresh failed."""
    grant = token_row(grant_id)
    if grant is None or grant.status == Grant.Status.NEEDS_RECONNECT or not is_fresh(grant, 0):
        return None
    return _token_of(grant)


def _token_of(grant: Grant) -> FreshToken:
    token = grant.access_token
    if not token:
        raise ReconnectRequired("The grant holds no access token.")
    return FreshToken(token, grant.access_token_expires_at, grant.version)


# ---- the refresh's statements, compiled once -------------------------------------------------
# A refresh is three statements on one row by primary key. Compiling them through the ORM costs
# more CPU than running them (about a millisecond each on a small machine), so they are built
# once per database from the model's metadata: names quoted by the backend, values prepared by
# each field as QuerySet.update() prepares them, rows converted as a SELECT converts them.

_statements: dict[tuple[str, str, object], tuple[str, list[Any]]] = {}


def _connection() -> BaseDatabaseWrapper:
    return connections[router.db_for_write(Grant)]


def _columns(
    connection: BaseDatabaseWrapper, names: tuple[str, ...] | None = None, table: str = ""
) -> str:
    quote = connection.ops.quote_name
    prefix = f"{quote(table)}." if table else ""
    return ", ".join(prefix + quote(str(field.column)) for field in _fields(names))


def _fields(names: tuple[str, ...] | None = None) -> list[Field[Any, Any]]:
    fields = Grant._meta.concrete_fields
    if names is None:
        return list(fields)
    wanted = {Grant._meta.pk.attname, *names}
    return [field for field in fields if field.attname in wanted]


def _grant_of(
    row: Sequence[object], connection: BaseDatabaseWrapper, names: tuple[str, ...] | None = None
) -> Grant:
    """The model instance of a row of ``_columns(connection, names)``: the backend's converters
    (SQLite's datetimes, uuids), then the field's (the encrypted fields' Ciphertext); the
    columns not read are deferred."""
    fields = _fields(names)
    loaded = []
    for model_field, value in zip(fields, row, strict=True):
        column = model_field.get_col(Grant._meta.db_table)
        for convert in (
            *connection.ops.get_db_converters(column),
            *model_field.get_db_converters(connection),
        ):
            value = convert(value, column, connection)
        loaded.append(value)
    return Grant.from_db(connection.alias, [f.attname for f in fields], loaded)


def read_grant(grant_id: int, names: tuple[str, ...] | None = None) -> Grant | None:
    """The grant (only ``names`` and its id, else every column), by primary key; None if gone."""
    connection = _connection()
    key = ("select", connection.alias, names)
    statement = _statements.get(key)
    if statement is None:
        table = connection.ops.quote_name(Grant._meta.db_table)
        pk = connection.ops.quote_name(str(Grant._meta.pk.column))
        # Names from the model's metadata, quoted by the backend; the value is a parameter.
        sql = f"SELECT {_columns(connection, names)} FROM {table} WHERE {pk} = %s"  # noqa: S608
        statement = _statements[key] = (sql, [])
    with connection.cursor() as cursor:
        cursor.execute(statement[0], [grant_id])
        row = cursor.fetchone()
    return None if row is None else _grant_of(row, connection, names)


def connected_token_row(user_id: int, site_id: int) -> Grant | None:
    """``token_row`` of the grant of the (user, site) connection, in one query; None if none."""
    connection = _connection()
    key = ("connected", connection.alias, TOKEN_FIELDS)
    statement = _statements.get(key)
    if statement is None:
        quote = connection.ops.quote_name
        grants, links = Grant._meta, Connection._meta
        link = {
            name: quote(str(cast("Field[Any, Any]", links.get_field(name)).column))
            for name in ("user", "site", "grant")
        }
        g, c = quote(grants.db_table), quote(links.db_table)
        pk = quote(str(grants.pk.column))
        # Names from the models' metadata, quoted by the backend; the values are parameters.
        sql = (
            f"SELECT {_columns(connection, TOKEN_FIELDS, grants.db_table)} FROM {g} "  # noqa: S608
            f"INNER JOIN {c} ON ({c}.{link['grant']} = {g}.{pk}) "
            f"WHERE {c}.{link['user']} = %s AND {c}.{link['site']} = %s"
        )
        statement = _statements[key] = (sql, [])
    with connection.cursor() as cursor:
        cursor.execute(statement[0], [user_id, site_id])
        row = cursor.fetchone()
    return None if row is None else _grant_of(row, connection, TOKEN_FIELDS)


def _write(
    grant_id: int, where: dict[str, object], values: dict[str, object], *, bump: bool = False
) -> int:
    """``Grant.objects.filter(pk=grant_id, **where).update(**values)`` (plus ``version =
    version + 1`` when ``bump``), as one statement without the ORM's compiling; the rows
    written."""
    connection = _connection()
    quote = connection.ops.quote_name
    meta = Grant._meta
    assignments: list[str] = []
    params: list[Any] = []
    for name, value in values.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(str(field.column))} = %s")  # type: ignore[union-attr]
        params.append(field.get_db_prep_save(value, connection))  # type: ignore[union-attr]
    if bump:
        version = quote(str(meta.get_field("version").column))
        assignments.append(f"{version} = {version} + 1")
    conditions = [f"{quote(str(meta.pk.column))} = %s"]
    params.append(grant_id)
    for name, value in where.items():
        field = meta.get_field(name)
        conditions.append(f"{quote(str(field.column))} = %s")  # type: ignore[union-attr]
        params.append(field.get_db_prep_value(value, connection))  # type: ignore[union-attr]
    # Names from the model's metadata, quoted by the backend; values are parameters.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


class _Lease(str):
    """A claim on a grant's refresh: the lease token (as the row stores it), the row as the
    claim read it back (``grant``), and whether it is still ``held`` (a write that matched
    released it in the same UPDATE)."""

    grant: Grant
    held: bool

    def __new__(cls, token: str, grant: Grant) -> _Lease:
        lease = super().__new__(cls, token)
        lease.grant, lease.held = grant, True
        return lease


def _claim(grant_id: int) -> _Lease | None:
    """Take the grant's refresh lease if nobody holds a live one; None when another worker
    holds it. The lease carries the row as it is under the lease (one query where the
    database returns rows from an UPDATE)."""
    lease = secrets.token_hex(16)
    connection = _connection()
    if _updates_return_rows(connection):
        grant = _claim_returning(grant_id, lease, connection)
    elif _claimable(grant_id).update(**_claim_values(lease)):
        # No UPDATE ... RETURNING (MySQL, MariaDB): the row under the lease, read apart.
        grant = read_grant(grant_id)
    else:
        grant = None
    return None if grant is None else _Lease(lease, grant)


def _claimable(grant_id: int) -> QuerySet[Grant]:
    return Grant.objects.filter(pk=grant_id).filter(
        Q(refresh_lock_until__isnull=True) | Q(refresh_lock_until__lt=Now())
    )


def _claim_values(lease: str) -> dict[str, object]:
    # The database's clock, not this host's: hosts whose clocks disagree still agree on leases.
    lease_end = ExpressionWrapper(
        Now() + timedelta(seconds=conf.REFRESH_LOCK_TIMEOUT), output_field=DateTimeField()
    )
    return {"refresh_lock_token": lease, "refresh_lock_until": lease_end}


#: Stand-ins the claim is compiled with, replaced by the real lease and id at each claim.
_LEASE_MARK, _ID_MARK = "atlassian-oauth-lease-to-be", -918273645


def _claim_returning(grant_id: int, lease: str, connection: BaseDatabaseWrapper) -> Grant | None:
    """The claim's UPDATE, as Django compiles it for the database (once per lease timeout),
    plus ``RETURNING`` every column: the row under the new lease, or None."""
    key = ("claim", connection.alias, conf.REFRESH_LOCK_TIMEOUT)
    statement = _statements.get(key)
    if statement is None:
        statement = _statements[key] = _update_statement(
            _claimable(_ID_MARK), _claim_values(_LEASE_MARK), connection
        )
    sql, template = statement
    marks = {_LEASE_MARK: lease, _ID_MARK: grant_id}
    params: list[Any] = [
        marks.get(param, param) if isinstance(param, str | int) else param for param in template
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else _grant_of(row, connection)


def _updates_return_rows(connection: BaseDatabaseWrapper) -> bool:
    # PostgreSQL has UPDATE ... RETURNING; SQLite since 3.35; MariaDB only for INSERT and
    # DELETE, MySQL not at all. Django's QuerySet.update() returns a count either way.
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return sqlite3.sqlite_version_info >= (3, 35)  # the library Django's backend uses
    return False


def _update_statement(
    queryset: QuerySet[Grant], values: dict[str, object], connection: BaseDatabaseWrapper
) -> tuple[str, list[Any]]:
    """``queryset.update(**values)`` as the SQL Django compiles for the database, plus
    ``RETURNING`` every column; its parameters (each stand-in in them exactly once)."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    statement, params = query.get_compiler(connection=connection).as_sql()
    template = list(params)
    for mark in (_LEASE_MARK, _ID_MARK):
        if template.count(mark) != 1:
            raise RuntimeError(f"The claim compiled with {template!r}: cannot place its values.")
    return f"{statement} RETURNING {_columns(connection)}", template


def _release(grant_id: int, lease: str) -> None:
    _write(grant_id, {"refresh_lock_token": str(lease)}, dict(RELEASED))
    if isinstance(lease, _Lease):
        lease.held = False


#: What every write under the lease also sets: the lease released, in the same UPDATE.
RELEASED = {"refresh_lock_token": "", "refresh_lock_until": None}


def _refresh_claimed(
    lease: _Lease,
    *,
    actor: Event.Actor,
    margin: float,
    stale_version: int | None,
) -> FreshToken:
    # The row as the claim found it: another worker may have refreshed since our first look.
    grant = lease.grant
    try:
        if grant.status == Grant.Status.NEEDS_RECONNECT:
            raise ReconnectRequired(DEAD_GRANT)
        moved_on = stale_version is not None and grant.version != stale_version
        if moved_on or (stale_version is None and _fresh_enough(grant, margin)):
            return _token_of(grant)
        return _call_atlassian(grant, lease, actor=actor)
    finally:
        # Released already by the write that stored the outcome, unless that matched no row.
        if lease.held:
            _release(grant.pk, lease)


# No variable of this frame or of what it calls (the client, the store, the ORM writing the
# sealed tokens) goes into an error report.
@sensitive_variables()
def _call_atlassian(grant: Grant, lease: _Lease, *, actor: Event.Actor) -> FreshToken:
    refresh_token = grant.refresh_token
    if not refresh_token:
        raise ReconnectRequired(NO_OFFLINE_ACCESS)
    try:
        app = app_for_client_id(grant.client_id)
        tokens = client.refresh_tokens(app, refresh_token)
    except client.InvalidGrant as error:
        if not _mark_dead(grant, lease, str(error), actor=actor):
            _log_moved_on(grant, actor, error)
            return _after_the_row_moved_on(grant.pk)
        logger.warning(
            "Refresh of grant %s (%s) [%s] failed: %s, needs reconnect. %s",
            grant.pk,
            grant,
            actor,
            error.error or "refused",
            error,
        )
        raise ReconnectRequired(f"Atlassian refused the refresh token: {error}") from error
    except (client.ClientConfigurationError, ImproperlyConfigured) as error:
        retry = _mark_failed(
            grant,
            lease,
            f"configuration: {error}",
            actor=actor,
            retry_after=CONFIGURATION_BACKOFF,
            configuration=True,
        )
        # Logged even when the row moved on: the app's credentials are wrong all the same.
        logger.error(
            "Refresh of grant %s (%s) [%s] failed on the app's configuration (client id %s)%s: %s",
            grant.pk,
            grant,
            actor,
            grant.client_id,
            "" if retry is None else f", next attempt in {retry:.0f} s",
            error,
        )
        if retry is None:
            return _after_the_row_moved_on(grant.pk)
        raise TemporarilyUnavailable(f"Refreshing is misconfigured: {error}", retry) from error
    except client.AtlassianError as error:
        retry_after = error.retry_after if isinstance(error, client.TransientError) else None
        retry = _mark_failed(grant, lease, str(error), actor=actor, retry_after=retry_after)
        if retry is None:
            _log_moved_on(grant, actor, error)
            return _after_the_row_moved_on(grant.pk)
        logger.warning(
            "Refresh of grant %s (%s) [%s] failed, next attempt in %.0f s (%s): %s",
            grant.pk,
            grant,
            actor,
            retry,
            "its access token still works" if is_fresh(grant, 0) else "its access token expired",
            error,
        )
        raise TemporarilyUnavailable(f"Refreshing failed: {error}", retry) from error
    return _write_tokens(grant, lease, tokens, actor=actor)


def _log_moved_on(grant: Grant, actor: Event.Actor, error: client.AtlassianError) -> None:
    logger.info(
        "Refresh of grant %s (%s) [%s] failed, but the grant changed meanwhile (a reconnect or "
        "another worker's refresh), so the failure is not recorded: %s",
        grant.pk,
        grant,
        actor,
        error,
    )


def _after_the_row_moved_on(grant_id: int) -> FreshToken:
    """Our refresh failed, but the row changed meanwhile (a reconnect, another worker's
    refresh): its token, if good, is the answer; our failure says nothing about it."""
    token = still_valid_token(grant_id)
    if token is None:
        raise TemporarilyUnavailable("The grant changed during the refresh; try again.", 0.0)
    return token


@sensitive_variables()
def _write_tokens(
    grant: Grant, lease: _Lease, tokens: client.TokenResponse, *, actor: Event.Actor
) -> FreshToken:
    now = timezone.now()
    rotated = tokens.refresh_token is not None
    recovered = bool(grant.refresh_failures) or grant.status != Grant.Status.ACTIVE
    grant.access_token = tokens.access_token
    if rotated:
        grant.refresh_token = tokens.refresh_token
    # Only these fields change; a stale writer (lease lost, row moved on) matches no row.
    access_field = Grant._meta.get_field("access_token")
    refresh_field = Grant._meta.get_field("refresh_token")
    expires_at = now + timedelta(seconds=tokens.expires_in)
    changes: dict[str, object] = {
        "access_token_expires_at": expires_at,
        "last_refreshed_at": now,
        "refresh_failures": 0,
        "next_refresh_at": None,
        "last_error": "",
        "last_failure": Grant.Failure.NONE,
        "status": Grant.Status.ACTIVE,
        **RELEASED,
    }
    if recovered:
        changes["state_changed_at"] = now  # recovered: healthy from now on
    if rotated:
        changes["refresh_token_issued_at"] = now
    if tokens.scopes:
        changes["scopes"] = " ".join(tokens.scopes)
    written = _write(
        grant.pk,
        {"refresh_lock_token": str(lease), "version": grant.version},
        {
            "access_token": access_field.sealed_value(grant),
            "refresh_token": refresh_field.sealed_value(grant),
            **changes,
        },
        bump=True,
    )
    if not written:
        # Our lease ran out and another worker wrote first: its refresh token is the one kept.
        # The access token Atlassian just gave us is valid all the same, so hand it out.
        logger.warning(
            "Refresh of grant %s (%s) [%s] finished after its lease ran out; the grant keeps "
            "the newer token another worker wrote.",
            grant.pk,
            grant,
            actor,
        )
        current = read_grant(grant.pk, ("version",))
        version = grant.version + 1 if current is None else current.version
        return FreshToken(tokens.access_token, expires_at, version, renewed=True)
    lease.held = False
    # The row is what this write made it (the tokens are already set): no second read.
    for name, value in changes.items():
        setattr(grant, name, value)
    grant.version += 1
    logger.info(
        "Refreshed grant %s (%s) [%s]: the access token now expires in %d s%s.",
        grant.pk,
        grant,
        actor,
        tokens.expires_in,
        "" if rotated else " (Atlassian sent no new refresh token; the old one is kept)",
    )
    emit(
        Event.Kind.REFRESHED,
        actor=actor,
        grant=grant,
        message="Refreshed the access token"
        + ("" if rotated else " (Atlassian sent no new refresh token; the old one is kept)"),
        details={"rotated": rotated, "expires_in": tokens.expires_in},
        arguments={"grant": grant},
        # Routine refreshes leave no row (the grant's own columns say when); these do.
        record=recovered or not rotated or actor in PEOPLE,
    )
    return FreshToken(tokens.access_token, expires_at, grant.version, renewed=True)


def _mark_dead(grant: Grant, lease: _Lease, error: str, *, actor: Event.Actor) -> bool:
    """Mark the grant dead unless the row moved on (a reconnect meanwhile); True if marked."""
    changes: dict[str, object] = {
        "status": Grant.Status.NEEDS_RECONNECT,
        "last_error": error[:500],
        "next_refresh_at": None,
        "state_changed_at": timezone.now(),
        **RELEASED,
    }
    where = {"refresh_lock_token": str(lease), "version": grant.version}
    if not _write(grant.pk, where, changes, bump=True):
        return False
    lease.held = False
    for name, value in changes.items():
        setattr(grant, name, value)
    grant.version += 1
    emit(
        Event.Kind.NEEDS_RECONNECT,
        actor=actor,
        grant=grant,
        message="Atlassian refused the refresh token; the user must reconnect",
        details={"error": error},
        arguments={"grant": grant, "error": error},
    )
    return True


def _mark_failed(
    grant: Grant,
    lease: _Lease,
    error: str,
    *,
    actor: Event.Actor,
    retry_after: float | None,
    configuration: bool = False,
) -> float | None:
    """Count the failure and schedule the next attempt; the tokens stay as they are.

    Returns the delay, or None when the row moved on meanwhile (nothing recorded then).
    """
    failures = grant.refresh_failures + 1
    delay = backoff_seconds(failures, retry_after)
    now = timezone.now()
    retry_at = now + timedelta(seconds=delay)
    kind = Grant.Failure.CONFIGURATION if configuration else Grant.Failure.TRANSIENT
    # "Since": the first failure of a run, or the moment the kind of failure changed.
    changed = grant.refresh_failures == 0 or grant.last_failure != kind
    changes: dict[str, object] = {
        "refresh_failures": failures,
        "next_refresh_at": retry_at,
        "last_error": error[:500],
        "last_failure": kind,
        "state_changed_at": now if changed else grant.state_changed_at,
        **RELEASED,
    }
    if not _write(grant.pk, {"refresh_lock_token": str(lease), "version": grant.version}, changes):
        return None
    lease.held = False
    for name, value in changes.items():
        setattr(grant, name, value)
    emit(
        Event.Kind.REFRESH_FAILED,
        actor=actor,
        grant=grant,
        message=f"Refresh failed ({failures} in a row); retrying in {delay:.0f} s",
        details={
            "error": error,
            "failures": failures,
            "retry_at": retry_at.isoformat(),
            "configuration": configuration,
        },
        arguments={"grant": grant, "error": error, "retry_at": retry_at},
    )
    return delay
