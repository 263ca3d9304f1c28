"""The one place that writes the event log. Callers send the matching signal (``signals``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sites.models import Site
from django.utils import timezone

from .models import Event, Grant

logger = logging.getLogger(__name__)


#: Identical failures repeated within this long add to one event's count instead of new rows.
COLLAPSE_WINDOW = timedelta(hours=24)


def record(
    kind: Event.Kind,
    *,
    actor: Event.Actor,
    message: str = "",
    user: AbstractBaseUser | AnonymousUser | None = None,
    site: Site | None = None,
    grant: Grant | None = None,
    account_id: str = "",
    collapse: bool = False,
    **details: Any,
) -> Event:
    """Write one event row. ``message`` and ``details`` must hold no token, code or secret.

    ``collapse``: when the latest event of this user and site is the same event, written
    within ``COLLAPSE_WINDOW``, count it there (``details["count"]``, ``details["last_at"]``).
    """
    user_id = user.pk if user is not None and user.is_authenticated else None
    account_id = account_id or (grant.account_id if grant else "")
    logger.info("atlassian_oauth %s (%s): %s", kind, actor, message)
    if collapse:
        repeated = _count_repeat(kind, actor, message, user_id, site, grant, account_id, details)
        if repeated is not None:
            return repeated
    return Event.objects.create(
        kind=kind,
        actor=actor,
        message=message,
        user_id=user_id,
        site=site,
        grant=grant,
        account_id=account_id,
        details=details,
    )


def _count_repeat(
    kind: Event.Kind,
    actor: Event.Actor,
    message: str,
    user_id: Any,
    site: Site | None,
    grant: Grant | None,
    account_id: str,
    details: dict[str, Any],
) -> Event | None:
    now = timezone.now()
    latest = Event.objects.filter(user_id=user_id, site=site).order_by("-created_at", "-pk").first()
    if (
        latest is None
        or latest.created_at < now - COLLAPSE_WINDOW
        or (latest.kind, latest.actor, latest.message) != (kind, actor, message)
        or (latest.grant_id, latest.account_id) != (grant.pk if grant else None, account_id)
        or {k: v for k, v in latest.details.items() if k not in ("count", "last_at")} != details
    ):
        return None
    latest.details = {
        **latest.details,
        "count": int(latest.details.get("count", 1)) + 1,
        "last_at": now.isoformat(),
    }
    latest.save(update_fields=["details"])
    return latest
