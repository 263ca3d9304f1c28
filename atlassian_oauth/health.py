"""One judgement of a grant's health, shared by the status page, admin and the status command.

The state comes from the one rule in SQL (``models.health_expression``); this module says what
it means: a level, a label, advice for the user, advice for admins, and since when it holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.contrib.sites.models import Site
from django.utils import dateformat, timezone
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext

from .conf import conf
from .models import CONSENT_LIFETIME_DAYS, AtlassianApp, Grant, GrantHealth, health_expression

Level = Literal["ok", "warning", "error"]

LEVELS: dict[str, Level] = {
    GrantHealth.HEALTHY: "ok",
    GrantHealth.NEEDS_RECONNECT: "error",
    GrantHealth.CONFIGURATION_ERROR: "error",
    GrantHealth.NO_REFRESH_TOKEN: "warning",
    GrantHealth.REFRESH_FAILING: "warning",
    GrantHealth.EXPIRING_SOON: "warning",
    GrantHealth.RECONNECT_SOON: "warning",
}
#: States whose fix is the user connecting again (for "reconnect soon": avoiding a break).
RECONNECT_STATES = frozenset(
    {GrantHealth.NEEDS_RECONNECT, GrantHealth.NO_REFRESH_TOKEN, GrantHealth.RECONNECT_SOON}
)


#: Product names are names: never translated.
JIRA, CONFLUENCE, ATLASSIAN = "Jira", "Confluence", "Atlassian"


def product_name(scopes: Iterable[str]) -> str:
    """What to call what ``scopes`` reach, for people: "Jira" or "Confluence" when they reach
    exactly one of the two, else "Atlassian" (both, or neither)."""
    scopes = list(scopes)
    jira = any("jira" in scope or "servicedesk" in scope for scope in scopes)
    confluence = any("confluence" in scope for scope in scopes)
    if jira != confluence:
        return JIRA if jira else CONFLUENCE
    return ATLASSIAN


def configured_scopes(site: Site) -> tuple[str, ...]:
    """The scopes a connect on ``site`` asks for (its own app's, else the settings'), without
    loading (and decrypting) the app's credentials: one query for the scopes only."""
    own = AtlassianApp.objects.filter(site=site).values_list("scopes", flat=True).first()
    return tuple((own or "").split()) or conf.SCOPES


def clock(value: datetime) -> str:
    """``value`` as a person here reads it: the time in the current timezone and the zone's
    name ("7:12 a.m. UTC"), with the date in front on any day but today."""
    local = timezone.localtime(value)
    shown = date_format(
        local, "TIME_FORMAT" if local.date() == timezone.localdate() else "DATETIME_FORMAT"
    )
    return f"{shown} {dateformat.format(local, 'T')}"


def duration(value: datetime, now: datetime | None = None) -> str:
    """How long from or until ``value``, as ``timesince``/``timeuntil`` say it ("3 minutes"),
    but "a few seconds" under a minute rather than "0 minutes"."""
    now = now or timezone.now()
    if abs((now - value).total_seconds()) < 60:
        return pgettext("a duration under a minute", "a few seconds")
    return timesince(value, now) if value <= now else timeuntil(value, now)


@dataclass(frozen=True)
class Health:
    level: Level
    label: str | Promise
    advice: str | Promise
    #: Connecting again is the fix (or, for "reconnect soon", avoids a break).
    reconnect: bool = False
    state: str = GrantHealth.HEALTHY


def health_state(grant: Grant, state: str | None = None) -> str:
    """``state``, or the grant's ``health_state`` annotation; else one query asks for it."""
    state = state or getattr(grant, "health_state", None)
    if state is None:
        state = (
            Grant.objects.filter(pk=grant.pk)
            .annotate(health_state=health_expression())
            .values_list("health_state", flat=True)
            .get()
        )
    return state


def grant_health(grant: Grant, state: str | None = None) -> Health:
    """What to tell the user about ``grant`` (see ``health_state`` for where the state comes
    from)."""
    state = health_state(grant, state)
    label = GrantHealth(state).label
    product = product_name(grant.scope_list)
    advice: str | Promise
    if state == GrantHealth.NEEDS_RECONNECT:
        advice = format_lazy(
            _("Atlassian no longer accepts this connection. Click Reconnect {product}."),
            product=product,
        )
    elif state == GrantHealth.NO_REFRESH_TOKEN:
        advice = _(
            "Atlassian sent no refresh token, so the connection stops working when the access "
            "token expires. This site's setup does not ask for offline_access: an administrator "
            "has to add it to the app's scopes, then reconnect."
        )
    elif state == GrantHealth.CONFIGURATION_ERROR:
        advice = _(
            "The connection cannot be renewed because of this site's setup; an administrator "
            "has been told. There is nothing you need to do."
        )
    elif state == GrantHealth.REFRESH_FAILING:
        advice = _("Atlassian could not be reached at the last refresh; it is being retried.")
    elif state == GrantHealth.EXPIRING_SOON:
        advice = _("The access token is about to be renewed.")
    elif state == GrantHealth.RECONNECT_SOON:
        advice = format_lazy(
            _(
                "Atlassian asks for consent again a year after it was given: reconnect "
                "before {date} to keep {product} working without a break."
            ),
            date=date_format(consent_expires_at(grant), "DATE_FORMAT"),
            product=product,
        )
    else:
        advice = _("Tokens are renewed automatically.")
    return Health(LEVELS[state], label, advice, reconnect=state in RECONNECT_STATES, state=state)


def health_since(grant: Grant, state: str | None = None) -> datetime | None:
    """Since when ``grant`` has been in its health state (None when unknown)."""
    state = health_state(grant, state)
    if state == GrantHealth.RECONNECT_SOON:
        return consent_expires_at(grant) - timedelta(seconds=conf.REAUTH_NOTICE)
    if state == GrantHealth.EXPIRING_SOON:
        return grant.access_token_expires_at - timedelta(seconds=conf.REFRESH_MARGIN)
    return grant.state_changed_at


def admin_advice(grant: Grant, state: str | None = None, *, user: str = "") -> str:
    """What an admin should do about ``grant``, in words for admins (``user``: whose it is)."""
    state = health_state(grant, state)
    who = user or _("the user")
    now = timezone.now()
    if state == GrantHealth.NEEDS_RECONNECT:
        since = grant.state_changed_at
        when = (
            format_lazy(_(" on {date}"), date=date_format(since, "DATETIME_FORMAT"))
            if since
            else ""
        )
        return str(
            format_lazy(
                # No full stop after {when}: a date format may end in one ("a.m.").
                _("Ask {who} to reconnect (Atlassian refused the grant{when})"),
                who=who,
                when=when,
            )
        )
    if state == GrantHealth.NO_REFRESH_TOKEN:
        return str(
            format_lazy(
                _(
                    "Add offline_access to the app's scopes, then ask {who} to reconnect: "
                    "Atlassian sent no refresh token."
                ),
                who=who,
            )
        )
    if state == GrantHealth.CONFIGURATION_ERROR:
        return str(
            _(
                "The app's client id or secret was refused by Atlassian: fix it under Atlassian "
                "apps (or in ATLASSIAN_OAUTH), then clear the backoff."
            )
        )
    if state == GrantHealth.REFRESH_FAILING:
        if grant.next_refresh_at and grant.next_refresh_at > now:
            return str(
                format_lazy(
                    _("Atlassian is unavailable or rate limiting; next attempt in {delay}."),
                    delay=timeuntil(grant.next_refresh_at, now),
                )
            )
        return str(_("Atlassian was unavailable; the next sweep retries."))
    if state == GrantHealth.EXPIRING_SOON:
        return str(
            _(
                "Not renewed yet: if this lasts more than a few minutes, check that Celery beat "
                "and a worker are running."
            )
        )
    if state == GrantHealth.RECONNECT_SOON:
        return str(
            format_lazy(
                _("Ask {who} to reconnect before {date} (Atlassian's yearly consent)."),
                who=who,
                date=date_format(consent_expires_at(grant), "DATE_FORMAT"),
            )
        )
    return str(_("Nothing to do: tokens are renewed automatically."))


def consent_expires_at(grant: Grant) -> datetime:
    """When Atlassian's absolute limit (365 days from consent; announced, not documented) ends."""
    return grant.consented_at + timedelta(days=CONSENT_LIFETIME_DAYS)
