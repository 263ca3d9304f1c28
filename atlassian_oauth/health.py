"""One judgement of a grant's health, shared by the status page, admin and the status command."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .models import CONSENT_LIFETIME_DAYS, Grant, GrantHealth, health_expression

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Health:
    level: Level
    label: str | Promise
    advice: str | Promise
    #: Connecting again is the fix (or, for "reconnect soon", avoids a break).
    reconnect: bool = False


def grant_health(grant: Grant, state: str | None = None) -> Health:
    """What to tell people about ``grant``. The state comes from ``GrantQuerySet.with_health``
    (``state``, or the grant's ``health_state`` annotation; else one query asks for it)."""
    state = state or getattr(grant, "health_state", None)
    if state is None:
        state = (
            Grant.objects.filter(pk=grant.pk)
            .annotate(health_state=health_expression())
            .values_list("health_state", flat=True)
            .get()
        )
    if state == GrantHealth.NEEDS_RECONNECT:
        return Health(
            "error",
            _("Needs reconnect"),
            _("Atlassian no longer accepts this connection. Click Reconnect Jira."),
            reconnect=True,
        )
    if state == GrantHealth.NO_REFRESH_TOKEN:
        return Health(
            "warning",
            _("No refresh token"),
            _(
                "Atlassian sent no refresh token, so the connection stops when the access token "
                "expires. Cause: the app's scopes lack offline_access. Fix: add offline_access "
                "to the scopes (settings or the site's Atlassian app), then reconnect."
            ),
            reconnect=True,
        )
    if state == GrantHealth.REFRESH_FAILING:
        return Health(
            "warning",
            _("Refresh failing"),
            _("Atlassian could not be reached at the last refresh; it is being retried."),
        )
    if state == GrantHealth.RECONNECT_SOON:
        return Health(
            "warning",
            _("Reconnect soon"),
            format_lazy(
                _(
                    "Atlassian asks for consent again a year after it was given: reconnect "
                    "before {date} to keep Jira working without a break."
                ),
                date=date_format(consent_expires_at(grant), "DATE_FORMAT"),
            ),
            reconnect=True,
        )
    return Health("ok", _("Healthy"), _("Tokens are renewed automatically."))


def consent_expires_at(grant: Grant) -> datetime:
    """When Atlassian's absolute limit (365 days from consent; announced, not documented) ends."""
    return grant.consented_at + timedelta(days=CONSENT_LIFETIME_DAYS)
