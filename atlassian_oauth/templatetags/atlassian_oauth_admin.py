"""``{% load atlassian_oauth_admin %}{% atlassian_oauth_health_summary %}``: connection counts per
health state, each a link to the filtered connection list, for an admin index page.

The app's own admin index (/admin/atlassian_oauth/) shows it; a project adds it to its main
admin index by overriding ``admin/index.html`` (README, "Admin").
"""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Count
from django.urls import reverse

from .. import scoping
from ..health import LEVELS
from ..models import Connection, GrantHealth, health_expression

register = template.Library()


@register.inclusion_tag("atlassian_oauth/admin/health_summary.html", takes_context=True)
def atlassian_oauth_health_summary(context: dict[str, Any]) -> dict[str, Any]:
    """Counts over the connections the admin may see (site scoping applies), in one query."""
    request = context.get("request")
    if request is None or not request.user.has_perm("atlassian_oauth.view_connection"):
        return {"health_summary": []}
    connections = Connection.objects.all()
    sites = scoping.allowed_sites(request.user)
    if sites is not None:
        connections = connections.filter(site__in=sites)
    counts = dict(
        connections.annotate(health_state=health_expression("grant__"))
        .order_by()
        .values_list("health_state")
        .annotate(total=Count("pk"))
        .values_list("health_state", "total")
    )
    url = reverse("admin:atlassian_oauth_connection_changelist")
    return {
        "health_summary": [
            {
                "state": state,
                "label": label,
                "level": LEVELS[state],
                "count": counts.get(state, 0),
                "url": f"{url}?health={state}",
                "active": False,
            }
            for state, label in GrantHealth.choices
        ]
    }
