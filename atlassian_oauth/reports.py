"""Plain-text reports on connections for operators (the ``status`` and ``refresh`` commands).
No secrets: a token's presence is read from its stored ciphertext, which is never decrypted or
shown.

The wording is for someone at a terminal: what the state means and what to run or whom to ask,
never the buttons a page shows its user (``health.grant_health`` has that advice).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sites.models import Site
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .beat import SWEEP_INTERVAL
from .conf import conf
from .health import Health, consent_expires_at, grant_health, health_since
from .models import Connection, Grant, GrantHealth, health_expression

#: How the commands suggested here are spelled.
MANAGE = "python manage.py atlassian_oauth"


@dataclass(frozen=True)
class ConnectionReport:
    connection: Connection
    health: Health
    refresh_token_present: bool
    #: What an operator should do, if anything: (label, text), e.g. ("Next step", "Ask ...").
    next_step: tuple[str, str] | None
    now: datetime

    @property
    def healthy(self) -> bool:
        return self.health.level == "ok"

    @property
    def needs_attention(self) -> bool:
        """Whether an operator should act: not healthy, except a token that entered the refresh
        margin so recently that the next sweep has not had its turn yet (that is beat doing its
        job, and counting it would make a monitor of ``status`` flap every hour)."""
        if self.health.state == GrantHealth.EXPIRING_SOON:
            since = health_since(self.connection.grant, self.health.state)
            return since is None or self.now - since > renewal_grace()
        return not self.healthy

    def lines(self) -> list[str]:
        """The report as text: a heading, then one indented ``label: value`` line per fact."""
        connection, grant = self.connection, self.connection.grant
        account = str(grant)
        if account != grant.account_id:
            account += f" (account id {grant.account_id})"
        expires = grant.access_token_expires_at
        facts = [
            ("Atlassian account", account),
            ("Health", f"{self.health.label}. {explanation(self.health.state, grant)}"),
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
        if self.next_step:
            facts.append(self.next_step)
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
        next_step=next_step(connection, health.state),
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


def explanation(state: str, grant: Grant) -> str:
    """What the health ``state`` means, for an operator."""
    if state == GrantHealth.NEEDS_RECONNECT:
        return (
            "Atlassian refused the refresh token (revoked, expired or reused): only the user can "
            "fix it, by connecting again."
        )
    if state == GrantHealth.NO_REFRESH_TOKEN:
        return (
            "Atlassian sent no refresh token (the app's scopes lack offline_access), so the "
            "connection stops when its access token expires."
        )
    if state == GrantHealth.CONFIGURATION_ERROR:
        return (
            "Atlassian refused the app's client id or secret at the last refresh; the user "
            "cannot fix this."
        )
    if state == GrantHealth.REFRESH_FAILING:
        return (
            "The last refresh failed (Atlassian unreachable, failing or rate limiting); it is "
            "retried automatically with backoff."
        )
    if state == GrantHealth.EXPIRING_SOON:
        return "The access token expires within the refresh margin and is not renewed yet."
    if state == GrantHealth.RECONNECT_SOON:
        return (
            "Atlassian asks for consent again a year after it was given, on "
            f"{iso(consent_expires_at(grant))}."
        )
    return "Tokens are renewed automatically."


def next_step(connection: Connection, state: str) -> tuple[str, str] | None:
    """What to do about ``connection`` in health ``state``, as (label, text); None: nothing."""
    grant, site = connection.grant, connection.site
    who = _who(connection)
    where = _status_page(site)
    refresh_now = f"`{MANAGE} refresh --force {_selection(connection)}`"
    if state == GrantHealth.NEEDS_RECONNECT:
        return (
            "Next step",
            f"Ask {who} to reconnect on the site's status page{where}, or remove the "
            f"connection: `{MANAGE} disconnect {_selection(connection)}`.",
        )
    if state == GrantHealth.NO_REFRESH_TOKEN:
        return (
            "Next step",
            "Add offline_access to the app's scopes (ATLASSIAN_OAUTH in the settings, or the "
            f"site's Atlassian app in admin), then ask {who} to reconnect on the site's status "
            f"page{where}.",
        )
    if state == GrantHealth.RECONNECT_SOON:
        return (
            "Next step",
            f"Ask {who} to reconnect on the site's status page{where} before "
            f"{iso(consent_expires_at(grant))}.",
        )
    if state == GrantHealth.CONFIGURATION_ERROR:
        return (
            "Next step",
            "Fix the app's client id or secret (ATLASSIAN_OAUTH in the settings, or the site's "
            f"Atlassian app in admin), then run {refresh_now}.",
        )
    if state == GrantHealth.REFRESH_FAILING:
        when = iso(grant.next_refresh_at) if grant.next_refresh_at else "at the next sweep"
        return (
            "Next attempt",
            f"{when}, automatically ({refresh_now} tries now). If it keeps failing, check that "
            "this server reaches Atlassian, and the last error.",
        )
    if state == GrantHealth.EXPIRING_SOON:
        return (
            "Next step",
            "If it is not renewed within a few minutes, check that Celery beat and a worker "
            f"are running (or run `{MANAGE} refresh --due` from cron).",
        )
    return None


def _who(connection: Connection) -> str:
    """The user, as an operator would reach them: username, and email when there is one."""
    user = connection.user
    email = getattr(user, user.get_email_field_name(), "") or ""
    name = _username(connection)
    return f"{name} ({email})" if email and email != name else name


def _selection(connection: Connection) -> str:
    """``--user alice --site example.com``, quoted for a shell."""
    return (
        f"--user {shlex.quote(_username(connection))} --site {shlex.quote(connection.site.domain)}"
    )


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


def renewal_grace() -> timedelta:
    """How long a token may sit inside the refresh margin before it is overdue: one sweep
    interval, the sweep's jitter, and a minute for the worker."""
    return timedelta(seconds=SWEEP_INTERVAL + conf.BEAT_JITTER + 60)
