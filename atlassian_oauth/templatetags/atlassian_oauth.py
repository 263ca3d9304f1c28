"""``{% load atlassian_oauth %}{% atlassian_connect_button %}``: a Connect Jira button anywhere."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.contrib.sites.models import Site
from django.urls import reverse
from django.utils.translation import gettext as _

from ..models import Connection

register = template.Library()


@register.inclusion_tag("atlassian_oauth/connect_button.html", takes_context=True)
def atlassian_connect_button(
    context: dict[str, Any], label: str = "", next_url: str = ""
) -> dict[str, Any]:
    """A link that starts the consent round trip and returns to ``next_url`` (default: here).

    Shows "Jira connected" instead when the user already has a connection on this site.
    """
    request = context["request"]
    connected = (
        request.user.is_authenticated
        and Connection.objects.filter(
            user=request.user.pk, site=Site.objects.get_current(request)
        ).exists()
    )
    query = urlencode({"next": next_url or request.get_full_path()})
    return {
        "connected": connected,
        "connect_url": f"{reverse('atlassian_oauth:connect')}?{query}",
        "label": label or _("Connect Jira"),
    }
