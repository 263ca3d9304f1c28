"""What admins do by hand: refresh grants now, clear a backoff, test an app's credentials, and
see whether the beat runs. The admin's actions are thin calls into these functions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.utils import timezone

from . import client, sweep
from .beat import REFRESH_TASK, time_limits
from .models import AtlassianApp, Event, Grant, Heartbeat
from .oauth_apps import app_of

#: The beat sweeps every minute; this long without a sweep means it is not running.
BEAT_LATE_AFTER = timedelta(minutes=5)
#: Presented as a refresh token to test credentials: Atlassian checks the client first.
PROBE_REFRESH_TOKEN = "atlassian-oauth-credential-check"  # noqa: S105  (not a secret)


@dataclass(frozen=True)
class RefreshRun:
    """``mode``: "enqueued" (a Celery worker refreshes) or "inline" (done in this request)."""

    mode: Literal["enqueued", "inline"]
    #: (grant id, what happened), in words for admins; never a secret.
    results: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CredentialCheck:
    ok: bool
    message: str


def broker_configured() -> bool:
    """Whether refreshes can be handed to Celery workers (a broker is set and tasks are not
    run eagerly in the caller)."""
    return bool(getattr(settings, "CELERY_BROKER_URL", None)) and not getattr(
        settings, "CELERY_TASK_ALWAYS_EAGER", False
    )


def refresh_now(grant_ids: Iterable[int], *, actor: Event.Actor) -> RefreshRun:
    """Refresh each grant now, whatever its expiry and even while it backs off after a failure
    (``sweep.refresh_if_due(force=True)``): on a worker when a broker is configured, else here
    and now."""
    ids = list(grant_ids)
    if broker_configured():
        from celery import current_app

        soft, hard = time_limits()
        for grant_id in ids:
            # By name: the task lives in an entry point, which services do not import. Ids and
            # plain words only, as for the beat's tasks.
            current_app.send_task(
                REFRESH_TASK,
                args=(grant_id,),
                kwargs={"force": True, "actor": str(actor)},
                soft_time_limit=soft,
                time_limit=hard,
            )
        return RefreshRun("enqueued", [(grant_id, "queued for a worker") for grant_id in ids])
    results = [
        (grant_id, str(sweep.refresh_if_due(grant_id, actor=actor, force=True))) for grant_id in ids
    ]
    return RefreshRun("inline", results)


def clear_backoff(grant_ids: Iterable[int], *, actor: Event.Actor) -> RefreshRun:
    """Forget the wait a failure scheduled (say, after fixing the app's secret), then refresh."""
    ids = list(grant_ids)
    Grant.objects.filter(pk__in=ids).update(next_refresh_at=None)
    return refresh_now(ids, actor=actor)


def check_credentials(row: AtlassianApp) -> CredentialCheck:
    """Ask Atlassian whether the app's client id and secret are accepted.

    A refresh with a token that cannot exist: Atlassian answers 401 for a client it does not
    accept, and says the token is invalid when it does (it checks the client first).
    """
    if not row.client_secret:
        return CredentialCheck(False, "No client secret is stored for this app.")
    try:
        client.refresh_tokens(app_of(row), PROBE_REFRESH_TOKEN)
    except client.InvalidGrant:
        return CredentialCheck(True, "Atlassian accepts this client id and secret.")
    except client.ClientConfigurationError as error:
        return CredentialCheck(False, f"Atlassian refused this client id or secret ({error}).")
    except client.AtlassianError as error:
        return CredentialCheck(False, f"Atlassian could not tell: {error}")
    return CredentialCheck(True, "Atlassian accepts this client id and secret.")


def last_sweep_at() -> datetime | None:
    """When the beat's sweep last ran (None: never)."""
    return Heartbeat.objects.filter(name=sweep.SWEEP_HEARTBEAT).values_list("at", flat=True).first()


def beat_is_late(now: datetime | None = None) -> bool:
    """No sweep in ``BEAT_LATE_AFTER`` while Celery is configured: refreshes are not happening."""
    if not broker_configured():
        return False
    last = last_sweep_at()
    return last is None or last < (now or timezone.now()) - BEAT_LATE_AFTER
