"""The app's data: per-site OAuth apps, grants (one encrypted token row each), connections,
the Atlassian sites a grant reaches, pending authorizations and the event log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.contrib.sites.models import Site
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import conf
from .fields import EncryptedTextField


class AtlassianApp(models.Model):
    """An OAuth 2.0 (3LO) app for one site; sites without one use the ATLASSIAN_OAUTH settings."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    site = models.OneToOneField(
        Site,
        on_delete=models.CASCADE,
        related_name="atlassian_app",
        verbose_name=_("site"),
    )
    client_id = models.CharField(
        _("client ID"),
        max_length=255,
        help_text=_("From the app's Settings page in the Atlassian developer console."),
    )
    client_secret = EncryptedTextField(
        _("client secret"),
        bind_field="uuid",
        null=True,
        blank=True,
        help_text=_("Stored encrypted and never shown again."),
    )
    scopes = models.CharField(
        _("scopes"),
        max_length=1000,
        blank=True,
        help_text=_(
            "Space-separated. Empty uses ATLASSIAN_OAUTH['SCOPES']. Keep offline_access, or "
            "Atlassian sends no refresh token."
        ),
    )
    callback_url = models.URLField(
        _("callback URL"),
        blank=True,
        help_text=_(
            "Must equal the app's callback URL in the developer console. Empty builds it from "
            "the request's host."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("Atlassian app")
        verbose_name_plural = _("Atlassian apps")

    def __str__(self) -> str:
        return f"{self.client_id} ({self.site})"


#: A token renewed this recently is not renewed again while it is valid, whatever the margin
#: says: a lifetime shorter than the margin would otherwise make every call (and every sweep)
#: refresh it, and a 401 right after a renewal is not the token's fault.
RECENT_REFRESH = timedelta(seconds=60)


def keepalive_due(now: datetime) -> models.Q:
    """Grants whose refresh token needs a keep-alive to stay inside Atlassian's 90 idle days.

    A refresh that got no new refresh token leaves refresh_token_issued_at as it was: checking
    last_refreshed_at too keeps such a grant from being refreshed again at every sweep.
    """
    cutoff = now - timedelta(seconds=conf.KEEPALIVE_AFTER)
    return models.Q(refresh_token_issued_at__lte=cutoff) & (
        models.Q(last_refreshed_at__isnull=True) | models.Q(last_refreshed_at__lte=cutoff)
    )


def keepalive_is_due(grant: Grant, now: datetime) -> bool:
    """``keepalive_due`` for one loaded grant, in Python (the same rule: a test holds them
    equal), so a refresh needs no query to ask it."""
    cutoff = now - timedelta(seconds=conf.KEEPALIVE_AFTER)
    issued, refreshed = grant.refresh_token_issued_at, grant.last_refreshed_at
    return issued is not None and issued <= cutoff and (refreshed is None or refreshed <= cutoff)


#: Atlassian announced (2022) that a consent ends 365 days after it was given.
CONSENT_LIFETIME_DAYS = 365


class GrantHealth(models.TextChoices):
    """A grant's health, judged once, in SQL (``health_expression``)."""

    HEALTHY = "healthy", _("Healthy")
    NEEDS_RECONNECT = "needs_reconnect", _("Needs reconnect")
    NO_REFRESH_TOKEN = "no_refresh_token", _("No refresh token")
    CONFIGURATION_ERROR = "configuration_error", _("Configuration error")
    REFRESH_FAILING = "refresh_failing", _("Refresh failing")
    EXPIRING_SOON = "expiring_soon", _("Expiring soon")
    RECONNECT_SOON = "reconnect_soon", _("Reconnect soon")


def health_expression(prefix: str = "", now: datetime | None = None) -> models.Case:
    """The one health rule, as an SQL expression over the grant (``prefix``: the lookup that
    reaches it, e.g. ``"grant__"`` from a connection). The first matching state wins."""
    now = now or timezone.now()
    # "Reconnect soon": fewer than REAUTH_NOTICE seconds left of the 365 days since consent.
    reconsent_before = (
        now + timedelta(seconds=conf.REAUTH_NOTICE) - timedelta(days=CONSENT_LIFETIME_DAYS)
    )
    # "Expiring soon": inside the refresh margin and not renewed yet (the sweep is late, or
    # is not running; a working beat renews within a minute or two).
    expiring_before = now + timedelta(seconds=conf.REFRESH_MARGIN)
    rules: list[tuple[GrantHealth, dict[str, object]]] = [
        (GrantHealth.NEEDS_RECONNECT, {"status": Grant.Status.NEEDS_RECONNECT}),
        (GrantHealth.NO_REFRESH_TOKEN, {"status": Grant.Status.NO_REFRESH_TOKEN}),
        (
            GrantHealth.CONFIGURATION_ERROR,
            {"refresh_failures__gt": 0, "last_failure": Grant.Failure.CONFIGURATION},
        ),
        (GrantHealth.REFRESH_FAILING, {"refresh_failures__gt": 0}),
        (GrantHealth.EXPIRING_SOON, {"access_token_expires_at__lte": expiring_before}),
        (GrantHealth.RECONNECT_SOON, {"consented_at__lt": reconsent_before}),
    ]
    return models.Case(
        *(
            models.When(
                models.Q(**{prefix + lookup: value for lookup, value in condition.items()}),
                then=models.Value(state.value),
            )
            for state, condition in rules
        ),
        default=models.Value(GrantHealth.HEALTHY.value),
        output_field=models.CharField(),
    )


def _expiring(now: datetime) -> models.Q:
    return models.Q(access_token_expires_at__lte=now + timedelta(seconds=conf.REFRESH_MARGIN))


class GrantQuerySet(models.QuerySet["Grant"]):
    def due(self, now: datetime | None = None) -> GrantQuerySet:
        """Grants the beat should refresh now, most urgent first, in one query: active, not
        backing off, not renewed within ``RECENT_REFRESH`` while still valid, and expiring
        within ``REFRESH_MARGIN`` or idle (``keepalive_due``).

        The sweep itself sends the two halves apart (``due_expiring``, ``due_idle``): each is
        served by an index, where this OR of them makes SQLite read every active row."""
        now = now or timezone.now()
        return self._sweepable(now).filter(_expiring(now) | keepalive_due(now))

    def due_expiring(self, now: datetime | None = None) -> GrantQuerySet:
        """The due grants whose access token expires within ``REFRESH_MARGIN``, most urgent
        first (the range of ``atlassian_grant_due_idx``)."""
        now = now or timezone.now()
        return self._sweepable(now).filter(_expiring(now))

    def due_idle(self, now: datetime | None = None) -> GrantQuerySet:
        """The due grants that only need a keep-alive: idle (``keepalive_due``, the range of
        ``atlassian_grant_keepalive_idx``) with an access token outside the margin; none of
        them is in ``due_expiring``."""
        now = now or timezone.now()
        return self._sweepable(now).filter(keepalive_due(now)).exclude(_expiring(now))

    def _sweepable(self, now: datetime) -> GrantQuerySet:
        not_backing_off = models.Q(next_refresh_at__isnull=True) | models.Q(
            next_refresh_at__lte=now
        )
        just_renewed = models.Q(
            last_refreshed_at__gt=now - RECENT_REFRESH, access_token_expires_at__gt=now
        )
        return (
            self.filter(status=Grant.Status.ACTIVE)
            .filter(not_backing_off)
            .exclude(just_renewed)
            # Most urgent first, so a rate-limited sweep spends its budget where it matters.
            .order_by("access_token_expires_at")
        )

    def idle(self, now: datetime | None = None) -> GrantQuerySet:
        """Grants whose refresh token needs a keep-alive refresh (see ``keepalive_due``)."""
        return self.filter(keepalive_due(now or timezone.now()))

    def with_health(self, now: datetime | None = None) -> GrantQuerySet:
        """Each grant annotated with ``health_state`` (a ``GrantHealth`` value)."""
        return self.annotate(health_state=health_expression(now=now))

    def needs_attention(self, now: datetime | None = None) -> GrantQuerySet:
        """Grants a person has to look at: every health but healthy."""
        return self.annotate(health_state=health_expression(now=now)).exclude(
            health_state=GrantHealth.HEALTHY
        )

    def delete_unused(self) -> int:
        """Delete the grants here that no connection uses, secrets first; how many went."""
        with transaction.atomic(using=self.db):
            # Lock the grants alone (PostgreSQL refuses FOR UPDATE across the outer join a
            # "no connections" filter needs); a connect attaching to one waits for this lock.
            locked = list(self.select_for_update().values_list("pk", flat=True))
            unused = list(
                Grant.objects.filter(pk__in=locked, connections__isnull=True).values_list(
                    "pk", flat=True
                )
            )
            if not unused:
                return 0
            # Secrets go first, so nothing survives even where the delete leaves traces behind.
            Grant.objects.filter(pk__in=unused).update(access_token=None, refresh_token=None)
            Grant.objects.filter(pk__in=unused).delete()
        return len(unused)


class Grant(models.Model):
    """One Atlassian account's consent to one app: the only copy of its tokens."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        NO_REFRESH_TOKEN = "no_refresh_token", _("No refresh token (offline_access missing)")
        NEEDS_RECONNECT = "needs_reconnect", _("Needs reconnect")

    class Failure(models.TextChoices):
        NONE = "", _("None")
        #: Atlassian's side: 5xx, 429, timeouts, unexpected answers; retried with backoff.
        TRANSIENT = "transient", _("Atlassian unavailable")
        #: The app's client id or secret was refused: an admin must fix the app.
        CONFIGURATION = "configuration", _("Configuration error")

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The client id names the Atlassian app; Atlassian keeps one grant per (app, account).
    client_id = models.CharField(_("client ID"), max_length=255)
    account_id = models.CharField(_("Atlassian account ID"), max_length=128)
    account_name = models.CharField(_("account name"), max_length=255, blank=True)
    account_email = models.EmailField(_("account email"), blank=True)
    profile_updated_at = models.DateTimeField(
        _("profile re-read"),
        null=True,
        blank=True,
        help_text=_(
            "When the name and email were last re-read because Atlassian reported them changed "
            "(connecting reads them too)."
        ),
    )
    access_token = EncryptedTextField(_("access token"), bind_field="uuid", null=True)
    refresh_token = EncryptedTextField(_("refresh token"), bind_field="uuid", null=True)
    access_token_expires_at = models.DateTimeField(_("access token expires"))
    scopes = models.TextField(_("granted scopes"), blank=True)
    status = models.CharField(
        _("status"), max_length=32, choices=Status.choices, default=Status.ACTIVE
    )
    consented_at = models.DateTimeField(
        _("consented"), help_text=_("Last consent: Atlassian may ask again a year after it.")
    )
    refresh_token_issued_at = models.DateTimeField(
        _("refresh token issued"),
        null=True,
        blank=True,
        help_text=_("A refresh token unused for 90 days dies."),
    )
    last_refreshed_at = models.DateTimeField(_("last refreshed"), null=True, blank=True)
    next_refresh_at = models.DateTimeField(
        _("next refresh attempt"),
        null=True,
        blank=True,
        help_text=_("Set while a failed refresh is backing off."),
    )
    refresh_failures = models.PositiveIntegerField(_("consecutive refresh failures"), default=0)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    last_failure = models.CharField(
        _("kind of the last failure"),
        max_length=16,
        choices=Failure.choices,
        blank=True,
        help_text=_("Set while refreshing fails: Atlassian's side, or the app's credentials."),
    )
    state_changed_at = models.DateTimeField(
        _("state since"),
        null=True,
        blank=True,
        help_text=_(
            "When the grant last changed state: connected, started failing, recovered, died."
        ),
    )
    # A lease, not a database lock: a compare-and-swap UPDATE claims it on every database, no
    # transaction stays open during the HTTP call, and a crashed holder's claim simply expires.
    refresh_lock_token = models.CharField(_("refresh claimed by"), max_length=64, blank=True)
    refresh_lock_until = models.DateTimeField(_("refresh claim expires"), null=True, blank=True)
    version = models.PositiveBigIntegerField(
        _("version"), default=0, help_text=_("Bumped by every token write; stale writers fail.")
    )
    resources_synced_at = models.DateTimeField(
        _("sites last read"),
        null=True,
        blank=True,
        help_text=_("When the Atlassian sites this grant reaches were last read from Atlassian."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        verbose_name = _("grant")
        verbose_name_plural = _("grants")
        permissions: ClassVar = [
            ("refresh_grant", _("Can refresh a grant now and clear its backoff")),
        ]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["client_id", "account_id"], name="atlassian_oauth_grant_per_app_account"
            ),
        ]
        indexes: ClassVar = [
            # The beat's "due for refresh" query and the admin's health filters.
            models.Index(
                fields=["status", "access_token_expires_at"], name="atlassian_grant_due_idx"
            ),
            models.Index(fields=["status", "next_refresh_at"], name="atlassian_grant_retry_idx"),
            # The keep-alive half of the sweep's query (refresh tokens nearing 90 idle days).
            models.Index(
                fields=["status", "refresh_token_issued_at"], name="atlassian_grant_keepalive_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.account_email or self.account_name or self.account_id

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()


class Connection(models.Model):
    """One Django user on one site linked to a grant: what users connect and code asks for."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="atlassian_connections",
        verbose_name=_("user"),
    )
    site = models.ForeignKey(
        Site,
        on_delete=models.CASCADE,
        related_name="atlassian_connections",
        verbose_name=_("site"),
    )
    grant = models.ForeignKey(
        Grant,
        on_delete=models.CASCADE,
        related_name="connections",
        verbose_name=_("grant"),
    )
    # The Atlassian site the connection works in, per product (atlassian_oauth.resources): the
    # only one, or the user's choice. A site Atlassian stops listing stays here, marked
    # removed, so the user can be told which one went.
    jira_resource = models.ForeignKey(
        "Resource",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("Jira site"),
    )
    confluence_resource = models.ForeignKey(
        "Resource",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("Confluence site"),
    )
    connected_at = models.DateTimeField(_("connected"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("connection")
        verbose_name_plural = _("connections")
        permissions: ClassVar = [
            ("disconnect_connection", _("Can disconnect a user's connection")),
        ]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["user", "site"], name="atlassian_oauth_connection_per_user_site"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.site}"


class ListedResourceManager(models.Manager["Resource"]):
    """The sites Atlassian lists for their grant now: ``removed_at`` unset."""

    def get_queryset(self) -> models.QuerySet[Resource]:
        return super().get_queryset().filter(removed_at__isnull=True)


class Resource(models.Model):
    """An Atlassian cloud site a grant reaches (from accessible-resources).

    ``Resource.objects`` and ``grant.resources`` hold the sites Atlassian lists now. A site it
    stopped listing is kept, with ``removed_at`` set, only while a connection's chosen site
    (``Connection.jira_resource``, ``confluence_resource``) is that one; ``all_objects`` sees
    those too.
    """

    grant = models.ForeignKey(
        Grant, on_delete=models.CASCADE, related_name="resources", verbose_name=_("grant")
    )
    # Not unique: Atlassian lists one cloud id once per product (Jira, Confluence).
    cloud_id = models.CharField(_("cloud ID"), max_length=64)
    name = models.CharField(_("name"), max_length=255)
    # Empty when Atlassian sent no well-formed https: URL (client.https_url).
    url = models.URLField(_("URL"), blank=True)
    avatar_url = models.URLField(_("avatar URL"), max_length=500, blank=True)
    scopes = models.JSONField(_("scopes"), default=list)
    removed_at = models.DateTimeField(
        _("no longer listed since"),
        null=True,
        blank=True,
        help_text=_("Atlassian stopped listing this site for the grant."),
    )

    # The first manager is the default: related managers (grant.resources) and prefetches
    # see listed sites only, so nothing hands out a site the grant no longer reaches.
    objects = ListedResourceManager()
    all_objects: ClassVar[models.Manager[Resource]] = models.Manager()

    class Meta:
        verbose_name = _("Atlassian site")
        verbose_name_plural = _("Atlassian sites")
        ordering: ClassVar = ["name", "pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    @property
    def link_url(self) -> str:
        """The URL if it may be rendered as a link (https: only), else ""."""
        return self.url if self.url.startswith("https://") else ""

    @property
    def product(self) -> str:
        """Which product the entry is for, judged from its scopes."""
        if any("confluence" in scope for scope in self.scopes):
            return "confluence"
        return "jira"


class AuthorizationState(models.Model):
    """One consent round trip in progress: single use, short-lived, bound to its browser."""

    state_hash = models.CharField(_("state hash"), max_length=64, unique=True)
    session_binding_hash = models.CharField(_("session binding hash"), max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, verbose_name=_("user")
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, verbose_name=_("site"))
    client_id = models.CharField(_("client ID"), max_length=255)
    redirect_uri = models.URLField(_("redirect URI"), max_length=1000)
    next_url = models.CharField(_("next URL"), max_length=2000, blank=True)
    expires_at = models.DateTimeField(_("expires"), db_index=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("authorization in progress")
        verbose_name_plural = _("authorizations in progress")

    def __str__(self) -> str:
        return f"authorization for {self.user} on {self.site}"


class Event(models.Model):
    """The log of every state change, with who caused it and never a secret."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", _("Connected")
        CONNECT_FAILED = "connect_failed", _("Connect failed")
        REFRESHED = "refreshed", _("Refreshed")
        REFRESH_FAILED = "refresh_failed", _("Refresh failed")
        NEEDS_RECONNECT = "needs_reconnect", _("Needs reconnect")
        DISCONNECTED = "disconnected", _("Disconnected")
        KEYS_ROTATED = "keys_rotated", _("Keys rotated")
        ACCOUNT_CLOSED = "account_closed", _("Account closed")

    class Actor(models.TextChoices):
        USER = "user", _("User")
        BEAT = "beat", _("Beat")
        ADMIN = "admin", _("Admin")
        COMMAND = "command", _("Command")
        APPLICATION = "application", _("Application code")
        #: A cascade: the user, site or grant a connection belonged to was deleted.
        SYSTEM = "system", _("System")

    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    actor = models.CharField(_("actor"), max_length=16, choices=Actor.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    site = models.ForeignKey(
        Site,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("site"),
    )
    grant = models.ForeignKey(
        Grant,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("grant"),
    )
    # Kept when the grant is deleted, so the log still says whose it was.
    account_id = models.CharField(_("Atlassian account ID"), max_length=128, blank=True)
    message = models.TextField(_("message"), blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    erased_at = models.DateTimeField(
        _("personal data erased"),
        null=True,
        blank=True,
        help_text=_(
            "Atlassian reported the account closed: its name and email were removed from "
            "this event."
        ),
    )
    created_at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering: ClassVar = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.created_at:%Y-%m-%d %H:%M})"


class Heartbeat(models.Model):
    """When a periodic job last ran (the beat's sweep): one row per job, updated in place."""

    name = models.CharField(_("name"), max_length=64, unique=True)
    at = models.DateTimeField(_("last run"))

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class AccountReport(models.Model):
    """Atlassian's personal data reporting of one app (client id): its last run, the outcome,
    and when the next report is due (``atlassian_oauth.personal_data``)."""

    class Outcome(models.TextChoices):
        REPORTED = "reported", _("Reported")
        RATE_LIMITED = "rate_limited", _("Rate limited")
        NO_TOKEN = "no_token", _("No access token accepted")
        FAILED = "failed", _("Failed")

    client_id = models.CharField(_("client ID"), max_length=255, unique=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices, blank=True)
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True)
    reported_at = models.DateTimeField(
        _("last complete report"),
        null=True,
        blank=True,
        help_text=_("When every account of the app was last reported."),
    )
    next_report_at = models.DateTimeField(_("next report due"), null=True, blank=True)
    accounts = models.PositiveIntegerField(_("accounts reported"), default=0)
    requests = models.PositiveIntegerField(_("requests"), default=0)
    closed = models.PositiveIntegerField(_("accounts closed"), default=0)
    updated = models.PositiveIntegerField(_("profiles updated"), default=0)
    failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    error = models.CharField(_("last error"), max_length=500, blank=True)
    cycle_period = models.PositiveIntegerField(
        _("cycle period"),
        null=True,
        blank=True,
        help_text=_(
            "Seconds, from Atlassian's Cycle-Period header; empty: the REPORT_CYCLE setting."
        ),
    )
    # A report cut short (rate limited) goes on after the last account it had reported.
    resume_after = models.CharField(_("resume after account"), max_length=128, blank=True)
    # A lease, as a grant's refresh has: two beats or a beat and the command never report
    # one app at once, and a crashed run's claim simply expires.
    claimed_until = models.DateTimeField(_("run claimed until"), null=True, blank=True)

    class Meta:
        verbose_name = _("personal data report")
        verbose_name_plural = _("personal data reports")

    def __str__(self) -> str:
        return f"personal data report of {self.client_id}"
