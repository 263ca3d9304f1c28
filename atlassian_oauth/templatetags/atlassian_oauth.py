"""``{% load atlassian_oauth %}``: the connect button, and times as the app's pages write them.

``{% atlassian_connect_button %}`` puts a Connect Jira button anywhere;
``{{ when|atlassian_time }}`` is a ``<time>`` element: the time (and the date, unless it is
today) with its timezone; ``{{ when|atlassian_duration }}`` how long ago or until then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.contrib.sites.models import Site
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..conf import conf
from ..health import LEVELS, RECONNECT_STATES, clock, duration, product_name
from ..models import AtlassianApp, Connection, GrantHealth, health_expression

register = template.Library()


@register.inclusion_tag("atlassian_oauth/connect_button.html", takes_context=True)
def atlassian_connect_button(
    context: dict[str, Any], label: str = "", next_url: str = ""
) -> dict[str, Any]:
    """A button that starts the consent round trip and returns to ``next_url`` (default: here).

    It follows the user's connection on this site: **Connect Jira** (none; ``label`` replaces
    the words), **Jira connected** (a link to the status page) or **Reconnect Jira** (the
    connection needs the user to consent again). "Jira" is what the scopes reach: Jira,
    Confluence, or Atlassian for both. One query, whatever the state.
    """
    request = context["request"]
    site = Site.objects.get_current(request)
    mine = Connection.objects.filter(site=OuterRef("pk"), user=request.user.pk)
    if not request.user.is_authenticated:
        mine = mine.none()
    row = (
        Site.objects.filter(pk=site.pk)
        .annotate(
            grant_scopes=Subquery(mine.values("grant__scopes")[:1]),
            health_state=Subquery(
                mine.annotate(state=health_expression("grant__")).values("state")[:1]
            ),
            app_scopes=Subquery(
                AtlassianApp.objects.filter(site=OuterRef("pk")).values("scopes")[:1]
            ),
        )
        .values("grant_scopes", "health_state", "app_scopes")
        .get()
    )
    connected = row["grant_scopes"] is not None
    if connected:
        product = product_name(row["grant_scopes"].split())
    else:
        product = product_name((row["app_scopes"] or "").split() or conf.SCOPES)
    state = row["health_state"] or GrantHealth.HEALTHY
    if not connected:
        mode, text = "connect", label or _("Connect %(product)s") % {"product": product}
    elif state in RECONNECT_STATES:
        mode, text = "reconnect", _("Reconnect %(product)s") % {"product": product}
    else:
        mode, text = "connected", _("%(product)s connected") % {"product": product}
    return {
        "mode": mode,
        "label": text,
        "level": LEVELS[state] if connected else "",
        "next_url": next_url or request.get_full_path(),
    }


@register.filter
def atlassian_time(value: datetime | None) -> SafeString | str:
    """``value`` as a ``<time>`` element reading "7:12 a.m. UTC" (``health.clock``)."""
    if value is None:
        return ""
    return format_html(
        '<time datetime="{}">{}</time>',
        timezone.localtime(value).isoformat(timespec="seconds"),
        clock(value),
    )


@register.filter
def atlassian_duration(value: datetime | None) -> str:
    """How long ago or until ``value``: "3 minutes", "a few seconds" (``health.duration``)."""
    return duration(value) if value is not None else ""
