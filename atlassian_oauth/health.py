"""One judgement of a grant's health, shared by the status page, admin and the status command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from .models import Grant

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Health:
    level: Level
    label: str | Promise
    advice: str | Promise


def grant_health(grant: Grant) -> Health:
    if grant.status == Grant.Status.NEEDS_RECONNECT:
        return Health(
            "error",
            _("Needs reconnect"),
            _("Atlassian no longer accepts this connection. Click Reconnect Jira."),
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
        )
    if grant.refresh_failures:
        return Health(
            "warning",
            _("Refresh failing"),
            _("Atlassian could not be reached at the last refresh; it is being retried."),
        )
    return Health("ok", _("Healthy"), _("Tokens are renewed automatically."))
