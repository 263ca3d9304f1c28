"""One judgement of a grant's health, shared by the status page, admin and the status command."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .conf import conf
from .models import Grant

#: Atlassian announced (2022) that a consent ends 365 days after it was given.
CONSENT_LIFETIME_DAYS = 365

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Health:
    level: Level
    label: str | Promise
    advice: str | Promise
    #: Connecting again is the fix (or, for "reconnect soon", avoids a break).
    reconnect: bool = False


def grant_health(grant: Grant) -> Health:
    if grant.status == Grant.Status.NEEDS_RECONNECT:
        return Health(
            "error",
            _("Needs reconnect"),
            _("Atlassian no longer accepts this connection. Click Reconnect Jira."),
            reconnect=True,
        )
    if grant.status == Grant.Status.NO_REFRESH_TOKEN:
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
    if grant.refresh_failures:
        return Health(
            "warning",
            _("Refresh failing"),
            _("Atlassian could not be reached at the last refresh; it is being retried."),
        )
    reconsent_by = consent_expires_at(grant)
    if reconsent_by - timezone.now() < timedelta(seconds=conf.REAUTH_NOTICE):
        return Health(
            "warning",
            _("Reconnect soon"),
            format_lazy(
                _(
                    "Atlassian asks for consent again a year after it was given: reconnect "
                    "before {date} to keep Jira working without a break."
                ),
                date=date_format(reconsent_by, "DATE_FORMAT"),
            ),
            reconnect=True,
        )
    return Health("ok", _("Healthy"), _("Tokens are renewed automatically."))


def consent_expires_at(grant: Grant) -> datetime:
    """When Atlassian's absolute limit (365 days from consent; announced, not documented) ends."""
    return grant.consented_at + timedelta(days=CONSENT_LIFETIME_DAYS)
