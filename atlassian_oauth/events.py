"""The one place that writes the event log. Callers send the matching signal (``signals``)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sites.models import Site

from .models import Event, Grant

logger = logging.getLogger(__name__)


def record(
    kind: Event.Kind,
    *,
    actor: Event.Actor,
    message: str = "",
    user: AbstractBaseUser | AnonymousUser | None = None,
    site: Site | None = None,
    grant: Grant | None = None,
    account_id: str = "",
    **details: Any,
) -> Event:
    """Write one event row. ``message`` and ``details`` must hold no token, code or secret."""
    event = Event.objects.create(
        kind=kind,
        actor=actor,
        message=message,
        user_id=user.pk if user is not None and user.is_authenticated else None,
        site=site,
        grant=grant,
        account_id=account_id or (grant.account_id if grant else ""),
        details=details,
    )
    logger.info("atlassian_oauth %s (%s): %s", kind, actor, message)
    return event
