"""Which sites a staff member may administer, with ``ATLASSIAN_OAUTH["ADMIN_SITE_SCOPED"]``.

The rule: superusers administer every site; other staff the sites named by their groups, one
group per site called ``atlassian-oauth:<domain>`` (e.g. ``atlassian-oauth:acme.example.com``).
A project with another rule names a function ``(user) -> QuerySet[Site] | None`` in
``ATLASSIAN_OAUTH["ADMIN_SITES"]`` (a dotted path); None means every site.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sites.models import Site
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from .conf import conf

#: Prefix of the group names that grant a site: ``atlassian-oauth:<domain>``.
GROUP_PREFIX = "atlassian-oauth:"


def allowed_sites(user: Any) -> QuerySet[Site] | None:
    """The sites ``user`` may administer, or None for every site."""
    if not conf.ADMIN_SITE_SCOPED:
        return None
    if conf.ADMIN_SITES:
        rule = import_string(conf.ADMIN_SITES)
        return rule(user)  # type: ignore[no-any-return]
    return sites_by_group(user)


def sites_by_group(user: Any) -> QuerySet[Site] | None:
    """The default rule: every site for superusers, else one group per site."""
    if user.is_superuser:
        return None
    domains = [
        name.removeprefix(GROUP_PREFIX)
        for name in user.groups.filter(name__startswith=GROUP_PREFIX).values_list("name", flat=True)
    ]
    return Site.objects.filter(domain__in=domains)
