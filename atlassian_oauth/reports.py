"""Plain-text reports on connections for operators (the ``status`` command). No secrets: a
token's presence is read from its stored ciphertext, which is never decrypted or shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sites.models import Site
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .health import Health, grant_health
from .models import Connection, Grant, health_expression


@dataclass(frozen=True)
class ConnectionReport:
    connection: Connection
    health: Health
    refresh_token_present: bool
    next_step: str
    now: datetime

    @property
    def healthy(self) -> bool:
        return self.health.level == "ok"

    def lines(self) -> list[str]:
        """The report as text: a heading, then one indented ``label: value`` line per fact."""
        connection, grant = self.connection, self.connection.grant
        account = str(grant)
        if account != grant.account_id:
            account += f" (account id {grant.account_id})"
        expires = grant.access_token_expires_at
        facts = [
            ("Atlassian account", account),
            ("Health", f"{self.health.label}. {self.health.advice}"),
            ("Refresh token", "yes" if self.refresh_token_present else "no"),
            ("Access token", f"expires {iso(expires)} ({relative(expires, self.now)})"),
            ("Scopes", grant.scopes or "(none)"),
            (
                "Last refreshed",
                iso(grant.last_refreshed_at) if grant.last_refreshed_at else "never",
            ),
        ]
        if grant.last_error:
            facts.append(("Last error", grant.last_error))
        facts.append(("Next step", self.next_step))
        width = max(len(label) for label, _ in facts) + 1
        heading = f"{_username(connection)} on {connection.site.domain} (site {connection.site_id})"
        return [heading] + [f"  {label + ':':<{width}} {value}" for label, value in facts]


def status_report(
    *,
    user: AbstractBaseUser | None = None,
    site: Site | None = None,
    now: datetime | None = None,
) -> list[ConnectionReport]:
    """A report on every connection, or those of ``user`` and/or on ``site``."""
    connections = Connection.objects.select_related("user", "site", "grant").annotate(
        grant_health_state=health_expression("grant__", now=now)
    )
    if user is not None:
        connections = connections.filter(user=user.pk)
    if site is not None:
        connections = connections.filter(site=site)
    ordering = ["site__domain", f"user__{_username_field()}", "pk"]
    return [connection_report(c, now=now) for c in connections.order_by(*ordering)]


def connection_report(connection: Connection, *, now: datetime | None = None) -> ConnectionReport:
    """One connection's state: health, tokens present, expiry, and what to do next."""
    grant = connection.grant
    health = grant_health(grant, getattr(connection, "grant_health_state", None))
    return ConnectionReport(
        connection=connection,
        health=health,
        refresh_token_present=_stored(grant, "refresh_token"),
        next_step=_next_step(connection, health),
        now=now or timezone.now(),
    )


def iso(moment: datetime) -> str:
    return timezone.localtime(moment).isoformat(timespec="seconds")


def relative(moment: datetime, now: datetime) -> str:
    """'in 42 minutes' or 'expired 5 minutes ago' (hours or days when longer)."""
    seconds = (moment - now).total_seconds()
    amount = _duration(abs(seconds))
    return f"in {amount}" if seconds >= 0 else f"expired {amount} ago"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hours"
    return f"{hours // 24} days"


def _stored(grant: Grant, name: str) -> bool:
    """Whether the column holds a ciphertext: ``value_from_object`` never decrypts."""
    field = Grant._meta.get_field(name)
    assert isinstance(field, models.Field)  # noqa: S101  (narrows the type for mypy)
    return field.value_from_object(grant) is not None


def _next_step(connection: Connection, health: Health) -> str:
    grant = connection.grant
    reconnect = (
        f"reconnect Jira on the status page{_status_page(connection.site)}, signed in as "
        f"{_username(connection)}"
    )
    if grant.status == Grant.Status.NEEDS_RECONNECT:
        return reconnect[0].upper() + reconnect[1:] + "."
    if grant.status == Grant.Status.NO_REFRESH_TOKEN:
        return f"Add offline_access to the app's scopes, then {reconnect}."
    if health.level != "ok":
        retry = f" at {iso(grant.next_refresh_at)}" if grant.next_refresh_at else ""
        return (
            f"None: the refresh is retried automatically{retry}. If it keeps failing, check "
            "that this server reaches Atlassian and the last error."
        )
    return "None."


def _status_page(site: Site) -> str:
    try:
        path = reverse("atlassian_oauth:status")
    except NoReverseMatch:
        return ""
    return f" ({site.domain}{path})"


def _username_field() -> str:
    return get_user_model().USERNAME_FIELD


def _username(connection: Connection) -> str:
    return str(connection.user.get_username())
