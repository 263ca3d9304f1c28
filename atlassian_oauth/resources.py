"""Which Atlassian site a connection works in, and a grant's sites kept as Atlassian lists them.

A grant often reaches several Atlassian sites, each listed once per product (Jira,
Confluence), and Atlassian does not say which one the user picked on its consent page. So a
connection remembers a default site per product (``Connection.jira_resource``,
``confluence_resource``):

- the only site of that product, chosen automatically whenever the grant's sites are stored
  (at connect, and at every ``sync``);
- else the user's choice on the status page (``choose``), which they can change at any time.

Until then, and when the chosen site is no longer reachable, ``api``'s ``jira_url()`` raises
``SiteChoiceRequired`` rather than guess: work meant for one site must not land on another.

``store`` writes what accessible-resources answered, at connect time and in the daily ``sync``
(the ``sync_resources`` beat task), so sites added later appear and sites gone disappear. A
site that goes while it is some connection's default is kept, marked removed (``removed_at``),
until the user chooses another, so the status page and admin can say which one went.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from . import client, refresh
from .exceptions import NotConnected, ReconnectRequired, SiteChoiceRequired, TemporarilyUnavailable
from .health import CONFLUENCE, JIRA
from .models import Connection, Event, Grant, Resource

logger = logging.getLogger(__name__)

#: The products a connection has a default site for, as ``Resource.product`` names them.
PRODUCTS = ("jira", "confluence")
PRODUCT_NAMES = {"jira": JIRA, "confluence": CONFLUENCE}

#: A grant whose sites were read this recently is not read again by the daily sync (a task
#: delivered twice, two beats): once a day is what keeps them true.
RESYNC_AFTER = timedelta(hours=20)
#: Seconds between the starts of two grants' reads: the sync's rate limit towards Atlassian
#: (86,400 grants a day at most; Atlassian documents no limit for accessible-resources).
SYNC_SPACING = 1.0
#: Seconds of validity the access token must have left for the read.
TOKEN_MARGIN = 60.0


def _field(product: str) -> str:
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {PRODUCTS}, not {product!r}")
    return f"{product}_resource"


# ---- the default site ------------------------------------------------------------------------


class SiteState(enum.StrEnum):
    """Where a connection stands with its default site of one product."""

    #: The stored default, still listed.
    CHOSEN = "chosen"
    #: None stored, and exactly one listed: that one is used.
    ONLY = "only"
    #: The grant reaches no site of the product.
    NONE = "none"
    #: Several listed, none chosen yet.
    UNCHOSEN = "unchosen"
    #: The stored default is no longer listed for the grant.
    GONE = "gone"


@dataclass(frozen=True)
class DefaultSite:
    product: str
    state: SiteState
    #: The site in use (``CHOSEN``, ``ONLY``), or the one that went (``GONE``).
    resource: Resource | None = None
    #: The product's listed sites: what the user may choose from.
    choices: tuple[Resource, ...] = ()

    @property
    def product_name(self) -> str:
        return PRODUCT_NAMES[self.product]

    @property
    def usable(self) -> bool:
        return self.state in (SiteState.CHOSEN, SiteState.ONLY)

    @property
    def needs_choice(self) -> bool:
        """The user has to choose (several and none chosen, or the chosen one went)."""
        return self.state in (SiteState.UNCHOSEN, SiteState.GONE)

    @property
    def choosable(self) -> bool:
        """A choice the status page offers: one to make, or more than one site to pick from."""
        return self.needs_choice or len(self.choices) > 1


def stored_default(connection: Connection, product: str) -> Resource | None:
    """The connection's stored default of ``product``, listed or not (no query when it was
    loaded with the connection, as ``api.get_connection`` does); None when unset or left
    over from another grant."""
    name = _field(product)
    if getattr(connection, f"{name}_id") is None:
        return None
    resource: Resource | None = getattr(connection, name)
    if resource is None or resource.grant_id != connection.grant_id:
        return None
    return resource


def default_site(
    connection: Connection,
    product: str,
    listed: Sequence[Resource] | Callable[[], Sequence[Resource]],
) -> DefaultSite:
    """Judge the connection's default site of ``product``; ``listed`` is the grant's listed
    sites (or a callable that reads them, called only when the judgement needs them)."""
    stored = stored_default(connection, product)
    if stored is not None and stored.removed_at is None:
        if not callable(listed):
            choices = tuple(r for r in listed if r.product == product)
            return DefaultSite(product, SiteState.CHOSEN, stored, choices)
        return DefaultSite(product, SiteState.CHOSEN, stored)
    sites = listed() if callable(listed) else listed
    choices = tuple(r for r in sites if r.product == product)
    if stored is not None:
        return DefaultSite(product, SiteState.GONE, stored, choices)
    if len(choices) == 1:
        return DefaultSite(product, SiteState.ONLY, choices[0], choices)
    if not choices:
        return DefaultSite(product, SiteState.NONE)
    return DefaultSite(product, SiteState.UNCHOSEN, None, choices)


def site_to_use(
    connection: Connection,
    product: str,
    listed: Sequence[Resource] | Callable[[], Sequence[Resource]],
) -> Resource:
    """The site application code works in for ``product``; raises ``SiteChoiceRequired``
    (the user must choose on the status page) or ``NotConnected`` (no such site at all)."""
    site = default_site(connection, product, listed)
    if site.usable and site.resource is not None:
        return site.resource
    name = PRODUCT_NAMES[product]
    if site.state == SiteState.GONE and site.resource is not None:
        raise SiteChoiceRequired(
            f"The {name} site {site.resource.name} the user chose is no longer reachable with "
            "their Atlassian account: send them to the status page (atlassian_oauth:status) "
            "to choose another.",
            product=product,
            reason=SiteChoiceRequired.UNREACHABLE,
        )
    if site.state == SiteState.UNCHOSEN:
        raise SiteChoiceRequired(
            f"The user's Atlassian account reaches several {name} sites and they have not "
            "chosen one: send them to the status page (atlassian_oauth:status) to choose.",
            product=product,
            reason=SiteChoiceRequired.SEVERAL,
        )
    raise NotConnected(f"The connected Atlassian account reaches no {product} site.")


def default_sites(
    connection: Connection, listed: Sequence[Resource] | None = None
) -> list[DefaultSite]:
    """The connection's default site of each product its grant has (or had) a site of;
    ``listed``: the grant's listed sites, if already read."""
    if listed is None:
        listed = list(Resource.objects.filter(grant_id=connection.grant_id))
    sites = [default_site(connection, product, listed) for product in PRODUCTS]
    return [site for site in sites if site.state != SiteState.NONE]


class InvalidChoice(Exception):
    """Not a site of the connection's grant for that product (or no longer listed)."""


def choose(connection: Connection, product: str, resource_id: object) -> Resource:
    """Make the grant's listed site ``resource_id`` the connection's default of ``product``."""
    if product not in PRODUCTS:
        raise InvalidChoice(f"Unknown product {product!r}.")
    try:
        pk = int(str(resource_id))
    except ValueError:
        raise InvalidChoice("Not a site id.") from None
    name = _field(product)
    with transaction.atomic():
        resource = Resource.objects.filter(pk=pk, grant_id=connection.grant_id).first()
        if resource is None or resource.product != product:
            raise InvalidChoice(f"Not a listed {product} site of the connection's grant.")
        Connection.objects.filter(pk=connection.pk).update(**{name: resource})
        setattr(connection, name, resource)
        drop_unchosen_removed(connection.grant_id)
    return resource


def shared_with(connection: Connection) -> list[str]:
    """The domains of the other sites with a connection to the same grant (reconnecting or
    revoking the grant affects them too), sorted."""
    domains = (
        Connection.objects.filter(grant_id=connection.grant_id)
        .exclude(site_id=connection.site_id)
        .values_list("site__domain", flat=True)
        .distinct()
    )
    return sorted(domains)


# ---- storing what Atlassian lists ------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What a ``store`` changed: the names of the sites added and removed (``"acme (Jira)"``)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def _label(resource: Resource) -> str:
    return f"{resource.name} ({PRODUCT_NAMES[resource.product]})"


def store(
    grant: Grant,
    items: Iterable[client.AccessibleResource],
    *,
    now: datetime | None = None,
    connection: Connection | None = None,
    save_synced_at: bool = True,
) -> Changes:
    """Make the grant's listed sites what accessible-resources answered (``items``).

    A site is the same site when its cloud id and product are, so a connection's default
    survives a reconnect or a sync. Call it in a transaction holding the grant's row (the
    connect callback's; ``sync``'s).
    """
    now = now or timezone.now()
    existing: dict[tuple[str, str], Resource] = {}
    duplicates: list[Resource] = []
    for stored in Resource.all_objects.filter(grant=grant).order_by("pk"):
        if (stored.cloud_id, stored.product) in existing:
            duplicates.append(stored)
        else:
            existing[(stored.cloud_id, stored.product)] = stored
    added: list[str] = []
    kept: dict[tuple[str, str], Resource] = {}
    for item in items:
        fresh = Resource(
            grant=grant,
            cloud_id=item.cloud_id,
            name=item.name,
            url=item.url,
            avatar_url=item.avatar_url,
            scopes=list(item.scopes),
        )
        key = (fresh.cloud_id, fresh.product)
        if key in kept:
            continue  # listed twice for one product: the same site, stored once
        row = existing.pop(key, None)
        if row is None:
            fresh.save()
            kept[key] = fresh
            added.append(_label(fresh))
            continue
        kept[key] = row
        changed = [
            name
            for name in ("name", "url", "avatar_url", "scopes")
            if getattr(row, name) != getattr(fresh, name)
        ]
        for name in changed:
            setattr(row, name, getattr(fresh, name))
        if row.removed_at is not None:
            # Listed again (access given back): the same row, so a default on it is back too.
            row.removed_at = None
            changed.append("removed_at")
            added.append(_label(row))
        if changed:
            row.save(update_fields=changed)
    gone = [row for row in existing.values() if row.removed_at is None]
    if gone:
        Resource.all_objects.filter(pk__in=[row.pk for row in gone]).update(removed_at=now)
    if duplicates:
        Resource.all_objects.filter(pk__in=[row.pk for row in duplicates]).delete()
    if existing:  # removed rows left (gone now, or before): drop those nobody chose
        drop_unchosen_removed(grant.pk)
    chosen = choose_only_sites(grant, list(kept.values()))
    if connection is not None:
        for product, resource in chosen.items():
            if getattr(connection, f"{_field(product)}_id") is None:
                setattr(connection, _field(product), resource)
    if save_synced_at:
        Grant.objects.filter(pk=grant.pk).update(resources_synced_at=now)
    grant.resources_synced_at = now
    return Changes(tuple(added), tuple(_label(row) for row in gone))


def drop_unchosen_removed(grant_id: int) -> int:
    """Delete the grant's removed sites that no connection has as its default any more."""
    chosen = Q(
        Exists(Connection.objects.filter(jira_resource=OuterRef("pk")))
        | Exists(Connection.objects.filter(confluence_resource=OuterRef("pk")))
    )
    deleted, _rows = (
        Resource.all_objects.filter(grant_id=grant_id, removed_at__isnull=False)
        .exclude(chosen)
        .delete()
    )
    return deleted


def choose_only_sites(grant: Grant, listed: list[Resource] | None = None) -> dict[str, Resource]:
    """Give each connection of the grant without a default of a product the grant's only
    listed site of that product, if it has exactly one; those sites, by product."""
    if listed is None:
        listed = list(Resource.objects.filter(grant=grant))
    chosen = {}
    for product in PRODUCTS:
        sites = [r for r in listed if r.product == product]
        if len(sites) == 1:
            chosen[product] = sites[0]
            Connection.objects.filter(grant=grant, **{f"{_field(product)}__isnull": True}).update(
                **{_field(product): sites[0]}
            )
    return chosen


def forget_defaults(connection: Connection) -> None:
    """Clear the connection's defaults (its grant changed: they were the old grant's sites)."""
    connection.jira_resource = None
    connection.confluence_resource = None


# ---- the daily sync --------------------------------------------------------------------------


class SyncResult(enum.StrEnum):
    SYNCED = "synced"
    #: Read within ``RESYNC_AFTER``: not read again.
    RECENT = "recent"
    #: The grant needs its user to reconnect (or has no token left): nothing to read with.
    DEAD = "dead"
    #: Atlassian could not be reached or answered unexpectedly; tomorrow's sync tries again.
    FAILED = "failed"
    #: The grant no longer exists.
    GONE = "gone"


@dataclass(frozen=True)
class SyncOutcome:
    grant_id: int
    result: SyncResult
    changes: Changes = field(default_factory=Changes)
    error: str = ""


def sync(
    grant_id: int, *, actor: Event.Actor = Event.Actor.BEAT, force: bool = False
) -> SyncOutcome:
    """Read the grant's sites from accessible-resources again and ``store`` them.

    The token comes through the one refresh path (``refresh.ensure_fresh``); a 401 refreshes
    once and reads once more, as API calls do. ``force`` reads even a grant read recently.
    """
    grant = Grant.objects.filter(pk=grant_id).only("status", "resources_synced_at").first()
    if grant is None:
        return SyncOutcome(grant_id, SyncResult.GONE)
    now = timezone.now()
    if (
        not force
        and grant.resources_synced_at is not None
        and grant.resources_synced_at > now - RESYNC_AFTER
    ):
        return SyncOutcome(grant_id, SyncResult.RECENT)
    if grant.status == Grant.Status.NEEDS_RECONNECT:
        return SyncOutcome(grant_id, SyncResult.DEAD)
    try:
        items = _read(grant_id, actor)
    except ReconnectRequired as error:
        return SyncOutcome(grant_id, SyncResult.DEAD, error=str(error))
    except Grant.DoesNotExist:
        return SyncOutcome(grant_id, SyncResult.GONE)
    except (TemporarilyUnavailable, client.AtlassianError) as error:
        logger.warning("Could not read the Atlassian sites of grant %s: %s", grant_id, error)
        return SyncOutcome(grant_id, SyncResult.FAILED, error=str(error))
    with transaction.atomic():
        # The grant's row, as the connect callback holds it: one of the two stores at a time.
        locked = Grant.objects.select_for_update().filter(pk=grant_id).first()
        if locked is None:
            return SyncOutcome(grant_id, SyncResult.GONE)
        changes = store(locked, items)
    if changes:
        logger.info(
            "Atlassian sites of grant %s (%s): added %s; removed %s.",
            grant_id,
            locked,
            ", ".join(changes.added) or "none",
            ", ".join(changes.removed) or "none",
        )
    return SyncOutcome(grant_id, SyncResult.SYNCED, changes)


def _read(grant_id: int, actor: Event.Actor) -> list[client.AccessibleResource]:
    token = refresh.ensure_fresh(grant_id, actor=actor, margin=TOKEN_MARGIN)
    try:
        return client.accessible_resources(token.access_token)
    except client.UnexpectedResponse as error:
        if error.status != 401:
            raise
    # Revoked before its expires_in (after a rotation's grace period): renew once, read once.
    token = refresh.ensure_fresh(
        grant_id, actor=actor, margin=TOKEN_MARGIN, stale_version=token.version
    )
    return client.accessible_resources(token.access_token)


def due_for_sync(now: datetime | None = None) -> list[int]:
    """Ids of the grants whose sites the daily sync reads: used by a connection, not dead, not
    read within ``RESYNC_AFTER``; the longest unread first."""
    now = now or timezone.now()
    grants = (
        Grant.objects.exclude(status=Grant.Status.NEEDS_RECONNECT)
        .filter(Exists(Connection.objects.filter(grant=OuterRef("pk"))))
        .filter(
            Q(resources_synced_at__isnull=True) | Q(resources_synced_at__lte=now - RESYNC_AFTER)
        )
        .order_by(F("resources_synced_at").asc(nulls_first=True), "pk")
    )
    return list(grants.values_list("pk", flat=True))


def enqueue_due(enqueue: Callable[[int, float], None], now: datetime | None = None) -> int:
    """Call ``enqueue(grant_id, countdown)`` for each grant due, ``SYNC_SPACING`` seconds
    apart; how many."""
    due = due_for_sync(now)
    for index, grant_id in enumerate(due):
        enqueue(grant_id, index * SYNC_SPACING)
    return len(due)
