"""The one way to log a state change: ``emit`` writes the event row and sends its signal.

Every ``Event.Kind`` has one signal in ``signals`` (``SIGNALS``) with documented arguments
(``signals.ARGUMENTS``); ``emit`` sends it after the transaction commits, so receivers never see
a change that is rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sites.models import Site
from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone

from . import signals
from .models import Connection, Event, Grant

logger = logging.getLogger(__name__)

#: The signal of each kind of event, and the model class it is sent with as ``sender``.
SIGNALS: dict[str, tuple[Signal, type[models.Model]]] = {
    Event.Kind.CONNECTED: (signals.connected, Connection),
    Event.Kind.CONNECT_FAILED: (signals.connect_failed, Connection),
    Event.Kind.REFRESHED: (signals.refreshed, Grant),
    Event.Kind.REFRESH_FAILED: (signals.refresh_failed, Grant),
    Event.Kind.NEEDS_RECONNECT: (signals.needs_reconnect, Grant),
    Event.Kind.DISCONNECTED: (signals.disconnected, Connection),
    Event.Kind.KEYS_ROTATED: (signals.keys_rotated, Event),
    Event.Kind.ACCOUNT_CLOSED: (signals.account_closed, Grant),
}


def emit(
    kind: Event.Kind,
    *,
    actor: Event.Actor,
    arguments: Mapping[str, Any],
    message: str = "",
    user: AbstractBaseUser | AnonymousUser | None = None,
    site: Site | None = None,
    grant: Grant | None = None,
    account_id: str = "",
    details: Mapping[str, Any] | None = None,
    collapse: bool = False,
    record: bool = True,
) -> Event | None:
    """Write the event and, on commit, send the kind's signal with ``arguments`` and ``actor``.

    ``arguments`` must be exactly the signal's documented arguments (``actor`` aside);
    ``message`` and ``details`` must hold no token, code or secret. ``record=False``: the
    signal only, no row (a routine refresh: the log grows with state changes, not with those);
    returns the row written, if any.
    """
    signal, sender = SIGNALS[kind]
    expected = signals.ARGUMENTS[kind] - {"actor"}
    if set(arguments) != expected:
        raise TypeError(f"The {kind} signal takes {sorted(expected)}, not {sorted(arguments)}.")
    event = None
    if record:
        event = _record(
            kind,
            actor=actor,
            message=message,
            user=user,
            site=site,
            grant=grant,
            account_id=account_id,
            details=dict(details or {}),
            collapse=collapse,
        )
    sent = dict(arguments)
    # After the row: outside a transaction on_commit runs at once, and receivers may read it.
    transaction.on_commit(lambda: signal.send(sender=sender, actor=actor, **sent))
    return event


#: Identical failures repeated within this long add to one event's count instead of new rows.
COLLAPSE_WINDOW = timedelta(hours=24)


def _record(
    kind: Event.Kind,
    *,
    actor: Event.Actor,
    message: str,
    user: AbstractBaseUser | AnonymousUser | None,
    site: Site | None,
    grant: Grant | None,
    account_id: str,
    details: dict[str, Any],
    collapse: bool,
) -> Event:
    """Write one event row.

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
