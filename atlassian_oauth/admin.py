"""Admin: whose Jira connection is broken, since when, why, and what to do about it.

Every page here is a thin call into the services (``operations``, ``connect``, ``scoping``,
``health``). No page shows a token, code or secret: encrypted fields have no form field, the
lists defer them, and a grant page shows only a short one-way fingerprint of each token.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import django
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import connect, crypto, operations, resources, scoping
from .fields import EncryptedTextField
from .health import LEVELS, admin_advice, consent_expires_at, grant_health, health_since
from .models import (
    CONSENT_LIFETIME_DAYS,
    AccountReport,
    AtlassianApp,
    Connection,
    Event,
    Grant,
    GrantHealth,
    Resource,
    health_expression,
)
from .redaction import scrub

# Django 5 warns unless told which scheme a bare host gets; callbacks are https.
URLFIELD_SCHEME: dict[str, Any] = {"assume_scheme": "https"} if django.VERSION >= (5, 0) else {}

#: Scopes a site's app cannot work without: no refresh token, or no account to store it under.
REQUIRED_SCOPES = ("offline_access", "read:me")
#: How much of the last error a list cell shows (the whole text is on hover).
ERROR_PREVIEW = 48
EVENTS_PER_PAGE = 20
EMPTY = "—"


# ---- shared pieces -----------------------------------------------------------------------------


def user_search_fields(prefix: str) -> tuple[str, ...]:
    """Search lookups for the user behind ``prefix``, by ``USERNAME_FIELD`` and the email field
    when the user model has one (never ``username``: custom user models may not)."""
    model = get_user_model()
    lookups = [f"{prefix}{model.USERNAME_FIELD}"]
    email = model.get_email_field_name()
    try:
        model._meta.get_field(email)
    except FieldDoesNotExist:
        pass
    else:
        if email != model.USERNAME_FIELD:
            lookups.append(f"{prefix}{email}")
    return tuple(lookups)


def user_email(user: Any) -> str:
    return str(getattr(user, get_user_model().get_email_field_name(), "") or "")


def breakable_email(email: str) -> SafeString:
    """An address a narrow cell may wrap after its "@" rather than mid-word."""
    local, at, domain = email.partition("@")
    return format_html("{}{}<wbr>{}", local, at, domain)


def allowed_sites(request: HttpRequest) -> QuerySet[Site] | None:
    """The sites ``request.user`` may see here (None: all); ``scoping`` holds the rule."""
    return scoping.allowed_sites(request.user)


def visible_sites(request: HttpRequest) -> QuerySet[Site]:
    sites = allowed_sites(request)
    return Site.objects.all() if sites is None else sites


def grants_on(sites: QuerySet[Site], prefix: str = "") -> Exists:
    """The grant behind ``prefix`` has a connection on one of ``sites``."""
    return Exists(
        Connection.objects.filter(grant=OuterRef(f"{prefix}pk" if prefix else "pk"), site__in=sites)
    )


def relative(when: datetime | None, *, past: str = "", future: str = "") -> SafeString | str:
    """``when`` as "in 4 minutes" / "3 hours ago", with the exact time on hover."""
    if when is None:
        return EMPTY
    now = timezone.now()
    if when > now:
        text = (future or str(_("in %s"))) % timeuntil(when, now, depth=1)
    else:
        text = (past or str(_("%s ago"))) % timesince(when, now, depth=1)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        when.isoformat(),
        date_format(timezone.localtime(when), "DATETIME_FORMAT"),
        text,
    )


def health_label(grant: Grant, state: str) -> str:
    if state == GrantHealth.REFRESH_FAILING:
        return ngettext(
            "Refresh failing %(count)d time",
            "Refresh failing %(count)d times",
            grant.refresh_failures,
        ) % {"count": grant.refresh_failures}
    return str(grant_health(grant, state).label)


def health_badge(grant: Grant, state: str, *, user: str = "", advice: bool = True) -> SafeString:
    """A coloured badge with a text label, and what an admin should do (also on hover)."""
    text = admin_advice(grant, state, user=user)
    badge = format_html(
        '<span class="atlassian-oauth-badge atlassian-oauth-health-{} atlassian-oauth-state-{}"'
        ' title="{}">{}</span>',
        LEVELS[state],
        state,
        text,
        health_label(grant, state),
    )
    if not advice or state == GrantHealth.HEALTHY:
        return badge
    return format_html('{}<div class="atlassian-oauth-advice">{}</div>', badge, text)


def advice_text(grant: Grant, state: str, user: str) -> SafeString | str:
    if state == GrantHealth.HEALTHY:
        return ""
    return format_html(
        '<div class="atlassian-oauth-advice">{}</div>', admin_advice(grant, state, user=user)
    )


def short_error(grant: Grant) -> SafeString | str:
    if not grant.last_error:
        return EMPTY
    text = scrub(grant.last_error)
    return format_html(
        '<span class="atlassian-oauth-error" title="{}">{}</span>',
        text,
        Truncator(text).chars(ERROR_PREVIEW),
    )


def fingerprint(grant: Grant, field: str) -> str:
    """A short one-way fingerprint of a token, so two views of a grant can be compared."""
    if not encrypted_field(Grant, field).has_value(grant):
        return str(_("none"))
    try:
        token = getattr(grant, field)
    except crypto.DecryptionError:
        return str(_("cannot be decrypted with the configured keys"))
    digest = hashlib.sha256(f"atlassian-oauth:{field}:{token}".encode()).hexdigest()
    return f"sha256:{digest[:12]}"


def encrypted_field(model: Any, name: str) -> EncryptedTextField:
    field: EncryptedTextField = model._meta.get_field(name)
    return field


def admin_link(obj: Any, text: Any = None) -> SafeString:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj if text is None else text)


# ---- filters -----------------------------------------------------------------------------------


class HealthFilter(admin.SimpleListFilter):
    """Every health state; the list annotates ``health_state`` (``health_expression``)."""

    title = _("health")
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        return GrantHealth.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in GrantHealth.values:
            return queryset.filter(health_state=self.value())
        return queryset


class GrantFieldFilter(admin.SimpleListFilter):
    """A filter on the grant's fields; ``prefix`` is the lookup reaching the grant."""

    prefix = ""

    def q(self, **lookups: Any) -> Q:
        return Q(**{self.prefix + name: value for name, value in lookups.items()})

    def choice_q(self, value: str, now: datetime) -> Q | None:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        condition = self.choice_q(value, timezone.now()) if value else None
        return queryset.filter(condition) if condition is not None else queryset


class ExpiringFilter(GrantFieldFilter):
    title = _("access token")
    parameter_name = "expires"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        return [("hour", _("Expiring within an hour")), ("expired", _("Expired"))]

    def choice_q(self, value: str, now: datetime) -> Q | None:
        if value == "hour":
            return self.q(access_token_expires_at__gt=now) & self.q(
                access_token_expires_at__lte=now + timedelta(hours=1)
            )
        if value == "expired":
            return self.q(access_token_expires_at__lte=now)
        return None


class IdleFilter(GrantFieldFilter):
    """Not refreshed for N days: Atlassian drops a refresh token unused for 90."""

    title = _("idle")
    parameter_name = "idle"
    DAYS = (7, 30, 60, 80)

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        return [
            (
                str(days),
                ngettext("Idle %(days)d day or more", "Idle %(days)d days or more", days)
                % {"days": days},
            )
            for days in self.DAYS
        ]

    def choice_q(self, value: str, now: datetime) -> Q | None:
        if not value.isdigit():
            return None
        cutoff = now - timedelta(days=int(value))
        return self.q(last_refreshed_at__lte=cutoff) | (
            self.q(last_refreshed_at__isnull=True) & self.q(consented_at__lte=cutoff)
        )


class ConsentFilter(GrantFieldFilter):
    """Approaching the 365 days after consent, when Atlassian asks for it again."""

    title = _("365-day consent limit")
    parameter_name = "consent"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        return [
            ("7", _("Ends within 7 days")),
            ("30", _("Ends within 30 days")),
            ("passed", _("Already passed")),
        ]

    def choice_q(self, value: str, now: datetime) -> Q | None:
        lifetime = timedelta(days=CONSENT_LIFETIME_DAYS)
        if value == "passed":
            return self.q(consented_at__lt=now - lifetime)
        if value in ("7", "30"):
            return self.q(consented_at__lt=now + timedelta(days=int(value)) - lifetime)
        return None


class AppFilter(GrantFieldFilter):
    """The Atlassian app (client id) the grant belongs to, named by its site when it has one."""

    title = _("Atlassian app")
    parameter_name = "app"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        # A page asks twice (its list, and the health summary's copy of the list's filters),
        # and the distinct client ids are a read of every grant: once per request.
        cached: list[tuple[str, str]] | None = getattr(request, self._CACHE, None)
        if cached is not None:
            return cached
        grants = Grant.objects.all()
        sites = allowed_sites(request)
        if sites is not None:
            grants = grants.filter(grants_on(sites))
        client_ids = list(
            grants.order_by("client_id").values_list("client_id", flat=True).distinct()
        )
        named = dict(
            AtlassianApp.objects.filter(client_id__in=client_ids).values_list(
                "client_id", "site__domain"
            )
        )
        choices = [
            (client_id, f"{client_id} ({named[client_id]})" if client_id in named else client_id)
            for client_id in client_ids
        ]
        setattr(request, self._CACHE, choices)
        return choices

    _CACHE = "_atlassian_oauth_app_choices"

    def choice_q(self, value: str, now: datetime) -> Q | None:
        return self.q(client_id=value)


def grant_filters(prefix: str) -> tuple[type[GrantFieldFilter], ...]:
    """The grant filters for a list whose rows reach the grant through ``prefix``."""
    return tuple(
        type(cls.__name__, (cls,), {"prefix": prefix})
        for cls in (ExpiringFilter, IdleFilter, ConsentFilter, AppFilter)
    )


class EventSiteFilter(admin.SimpleListFilter):
    """An event's site, or for events without one (the beat's), its grant's connections'."""

    title = _("site")
    parameter_name = "site"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        return [(str(site.pk), str(site)) for site in visible_sites(request).order_by("domain")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value or not value.isdigit():
            return queryset
        sites = Site.objects.filter(pk=int(value))
        return queryset.filter(Q(site__in=sites) | Q(grants_on(sites, "grant__")))


class SiteFilter(admin.RelatedFieldListFilter):
    """The site filter, listing only the sites the admin may see."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list:
        return [(site.pk, str(site)) for site in visible_sites(request).order_by("domain")]


class ChosenSiteFilter(admin.SimpleListFilter):
    """Connections whose chosen Atlassian site their grant no longer reaches."""

    title = _("chosen Atlassian site")
    parameter_name = "chosen_site"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Sequence[tuple[str, Any]]:
        return [("gone", _("No longer reachable"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "gone":
            return queryset.filter(
                Q(jira_resource__removed_at__isnull=False)
                | Q(confluence_resource__removed_at__isnull=False)
            )
        return queryset


def site_notes(connection: Connection) -> SafeString | str:
    """The connection's chosen sites that went, and the other sites its grant serves (the
    list annotates ``shared_sites``), one line each."""
    lines = [
        format_html(
            '<div class="atlassian-oauth-error">{}</div>',
            _("Chosen %(product)s site %(site)s no longer reachable")
            % {"product": resources.PRODUCT_NAMES[product], "site": resource.name},
        )
        for product in resources.PRODUCTS
        if (resource := resources.stored_default(connection, product)) is not None
        and resource.removed_at is not None
    ]
    shared = getattr(connection, "shared_sites", 0) or 0
    if shared:
        lines.append(
            format_html(
                '<div class="atlassian-oauth-quiet">{}</div>',
                ngettext(
                    "shared with %(count)d other site",
                    "shared with %(count)d other sites",
                    shared,
                )
                % {"count": shared},
            )
        )
    return format_html_join("", "{}", ((line,) for line in lines))


# ---- the health lists (connections, grants) and their actions ----------------------------------


class HealthAdminMixin:
    """The summary above the list, the beat banner, the app's CSS and the grant actions."""

    class Media:
        css = {"all": ("atlassian_oauth/admin.css",)}

    def selected_grant_ids(self, queryset: QuerySet) -> list[int]:
        raise NotImplementedError

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response: HttpResponse = super().changelist_view(  # type: ignore[misc]
            request, extra_context
        )
        context = getattr(response, "context_data", None)
        if isinstance(response, TemplateResponse) and context and "cl" in context:
            context["health_summary"] = self.health_summary(request, context["cl"])
            context["beat_is_late"] = operations.beat_is_late()
            context["last_sweep_at"] = operations.last_sweep_at()
        return response

    def _rows_without_health_filter(self, request: HttpRequest, cl: ChangeList) -> QuerySet[Any]:
        if django.VERSION >= (5, 0):
            return cl.get_queryset(request, exclude_parameters=[HealthFilter.parameter_name])
        # Django 4.2 has no exclude_parameters: the changelist of this request without it.
        stripped = copy.copy(request)
        query = request.GET.copy()
        query.pop(HealthFilter.parameter_name, None)
        stripped.GET = query  # type: ignore[assignment]  # a mutable copy; Django reads it only
        # (A mixin of ModelAdmins: they have get_changelist_instance.)
        changelist: ChangeList = self.get_changelist_instance(stripped)  # type: ignore[attr-defined]
        return changelist.get_queryset(stripped)

    def health_summary(self, request: HttpRequest, cl: ChangeList) -> list[dict[str, Any]]:
        """Counts per health state for the current filter and search (the health filter
        aside), one query, each with the link that filters to it."""
        rows = self._rows_without_health_filter(request, cl)
        counts = dict(
            rows.prefetch_related(None)
            .order_by()
            .values_list("health_state")
            .annotate(total=Count("pk"))
            .values_list("health_state", "total")
        )
        current = request.GET.get(HealthFilter.parameter_name)
        return [
            {
                "state": state,
                "label": label,
                "level": LEVELS[state],
                "count": counts.get(state, 0),
                "url": cl.get_query_string({HealthFilter.parameter_name: state}),
                "active": current == state,
            }
            for state, label in GrantHealth.choices
        ]

    def nothing_selected(self, request: HttpRequest) -> None:
        # Rows the admin may not see (another site's) drop out of the queryset; say so.
        self.message_user(  # type: ignore[attr-defined]
            request, _("None of the selected rows can be acted on here."), messages.WARNING
        )

    def has_refresh_grant_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("atlassian_oauth.refresh_grant")

    def run_on_grants(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        action: str,
        title: Any,
        question: Any,
        button: Any,
        run: Callable[..., Any],
    ) -> TemplateResponse | None:
        """The confirmation page; once confirmed, run ``run`` and show each grant's result."""
        grant_ids = self.selected_grant_ids(queryset)
        if not grant_ids:
            self.nothing_selected(request)
            return None
        grants = (
            Grant.objects.filter(pk__in=grant_ids)
            .annotate(health_state=health_expression())
            .prefetch_related(Prefetch("connections", Connection.objects.select_related("user")))
            .defer("access_token", "refresh_token")
            .order_by("account_email", "pk")
        )
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": self.model._meta,  # type: ignore[attr-defined]
            "title": title,
            "question": question,
            "button": button,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
            "media": self.media,  # type: ignore[attr-defined]
        }
        if request.POST.get("confirm") != "yes":
            context["rows"] = [
                {
                    "grant": grant,
                    "owners": owners(grant),
                    "health": health_badge(
                        grant, annotated_state(grant), user=owners(grant), advice=False
                    ),
                }
                for grant in grants
            ]
            return TemplateResponse(request, "atlassian_oauth/admin/action_confirm.html", context)
        outcome = run(grant_ids, actor=Event.Actor.ADMIN)
        by_id = {grant.pk: grant for grant in grants}
        context["mode"] = outcome.mode
        context["rows"] = [
            {"grant": by_id.get(grant_id), "grant_id": grant_id, "result": result}
            for grant_id, result in outcome.results
        ]
        return TemplateResponse(request, "atlassian_oauth/admin/action_result.html", context)

    @admin.action(description=_("Refresh now"), permissions=["refresh_grant"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        return self.run_on_grants(
            request,
            queryset,
            action="refresh_now",
            title=_("Refresh these grants now?"),
            question=_(
                "Each grant below is refreshed now: a Celery worker does it when a broker is "
                "configured, else this request does and shows the result."
            ),
            button=_("Yes, refresh now"),
            run=operations.refresh_now,
        )

    @admin.action(description=_("Clear backoff and retry"), permissions=["refresh_grant"])
    def clear_backoff(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        return self.run_on_grants(
            request,
            queryset,
            action="clear_backoff",
            title=_("Clear the backoff and retry these grants?"),
            question=_(
                "The wait after failed refreshes is dropped and each grant below is refreshed "
                "now. Do this after fixing the cause (e.g. the app's client secret)."
            ),
            button=_("Yes, clear and retry"),
            run=operations.clear_backoff,
        )


def annotated_state(row: Any) -> str:
    """The ``health_state`` the list's queryset annotated (``health_expression``)."""
    return str(row.health_state)


def owners(grant: Grant) -> str:
    """The users connected to ``grant`` (prefetched ``connections__user``)."""
    return ", ".join(sorted({c.user.get_username() for c in grant.connections.all()}))


def sort_keys(prefix: str) -> dict[str, F]:
    """The grant's dates under one name on both lists, so the date columns sort by them."""
    return {
        "sort_expires": F(f"{prefix}access_token_expires_at"),
        "sort_next": F(f"{prefix}next_refresh_at"),
    }


def site_names(grant: Grant) -> SafeString | str:
    resources = list(grant.resources.all())
    if not resources:
        return EMPTY
    return format_html_join(
        ", ", '<span title="{}">{}</span>', ((r.url, r.name) for r in resources)
    )


class GrantColumns:
    """The columns the connection and grant lists share, over ``grant_of(row)``."""

    def grant_of(self, row: Any) -> Grant:
        raise NotImplementedError

    def state_of(self, row: Any) -> str:
        return annotated_state(row)

    def owner_of(self, row: Any) -> str:
        raise NotImplementedError

    @admin.display(description=_("health"), ordering="health_state")
    def health(self, row: Any) -> SafeString:
        return health_badge(self.grant_of(row), self.state_of(row), user=self.owner_of(row))

    @admin.display(description=_("since"))
    def since(self, row: Any) -> SafeString | str:
        return relative(health_since(self.grant_of(row), self.state_of(row)))

    @admin.display(description=_("token expires"), ordering="sort_expires")
    def expires_in(self, row: Any) -> SafeString | str:
        return relative(
            self.grant_of(row).access_token_expires_at,
            past=str(_("expired %s ago")),
            future=str(_("in %s")),
        )

    @admin.display(description=_("last error"))
    def last_error(self, row: Any) -> SafeString | str:
        return short_error(self.grant_of(row))

    # The list's cells stack what belongs together, so ten facts fit in seven columns beside
    # the admin's navigation and the filters at 1,280 px.

    @admin.display(description=_("health"), ordering="health_state")
    def health_cell(self, row: Any) -> SafeString:
        grant, state = self.grant_of(row), self.state_of(row)
        since = health_since(grant, state)
        return format_html(
            '{}<div class="atlassian-oauth-since">{}</div>{}',
            health_badge(grant, state, user=self.owner_of(row), advice=False),
            format_html("{} {}", _("since"), relative(since)) if since else "",
            advice_text(grant, state, self.owner_of(row)),
        )

    @admin.display(description=_("refresh"), ordering="sort_next")
    def refresh_cell(self, row: Any) -> SafeString:
        grant = self.grant_of(row)
        return format_html(
            '<div>{} {}</div><div class="atlassian-oauth-next">{} {}</div>',
            _("last:"),
            relative(grant.last_refreshed_at),
            _("next:"),
            relative(grant.next_refresh_at) if grant.next_refresh_at else _("on schedule"),
        )

    @admin.display(description=_("Atlassian sites"))
    def atlassian_sites(self, row: Any) -> SafeString | str:
        return site_names(self.grant_of(row))


@admin.register(Connection)
class ConnectionAdmin(HealthAdminMixin, GrantColumns, admin.ModelAdmin):
    list_display = (
        "user_cell",
        "account_cell",
        "health_cell",
        "expires_in",
        "refresh_cell",
        "last_error",
    )
    list_display_links = ("user_cell",)
    change_list_template = "atlassian_oauth/admin/health_change_list.html"
    list_filter = (
        HealthFilter,
        ("site", SiteFilter),
        *grant_filters("grant__"),
        ChosenSiteFilter,
    )
    list_select_related = ("user", "site", "grant", "jira_resource", "confluence_resource")
    list_per_page = 50
    readonly_fields = (
        "user",
        "site",
        "account",
        "health",
        "since",
        "atlassian_sites",
        "sites_used",
        "shared_with",
        "connected_at",
        "updated_at",
    )
    fields = readonly_fields
    actions = ("refresh_now", "clear_backoff", "disconnect")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (
            *user_search_fields("user__"),
            "grant__account_id",
            "grant__account_email",
            "grant__resources__name",
            "grant__resources__url",
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        connections: QuerySet[Connection] = super().get_queryset(request)
        sites = allowed_sites(request)
        if sites is not None:
            connections = connections.filter(site__in=sites)
        return (
            connections.annotate(
                health_state=health_expression("grant__"),
                shared_sites=shared_sites_count(),
                **sort_keys("grant__"),
            )
            .defer("grant__access_token", "grant__refresh_token")
            .prefetch_related(
                Prefetch("grant__resources", Resource.objects.only("grant", "name", "url"))
            )
        )

    def grant_of(self, row: Connection) -> Grant:
        return row.grant

    def owner_of(self, row: Connection) -> str:
        return row.user.get_username()

    def selected_grant_ids(self, queryset: QuerySet) -> list[int]:
        return sorted(set(queryset.values_list("grant_id", flat=True)))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users connect themselves through Atlassian's consent page

    def has_change_permission(self, request: HttpRequest, obj: Connection | None = None) -> bool:
        return False  # nothing here is edited; the actions change state, and log who did it

    def has_delete_permission(self, request: HttpRequest, obj: Connection | None = None) -> bool:
        return False  # "Disconnect" logs the event and deletes an unused grant; a delete would not

    def has_disconnect_connection_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("atlassian_oauth.disconnect_connection")

    @admin.display(description=_("user"), ordering=f"user__{get_user_model().USERNAME_FIELD}")
    def user_name(self, connection: Connection) -> str:
        return connection.user.get_username()

    @admin.display(description=_("email"))
    def email(self, connection: Connection) -> str:
        return user_email(connection.user) or EMPTY

    @admin.display(description=_("Atlassian account"), ordering="grant__account_email")
    def account(self, connection: Connection) -> SafeString:
        return admin_link(connection.grant)

    @admin.display(description=_("user"), ordering=f"user__{get_user_model().USERNAME_FIELD}")
    def user_cell(self, connection: Connection) -> SafeString:
        return format_html(
            '{}<div class="atlassian-oauth-quiet">{}</div><div class="atlassian-oauth-quiet">{}'
            "</div>",
            connection.user.get_username(),
            breakable_email(user_email(connection.user)),
            connection.site,
        )

    @admin.display(description=_("Atlassian account"), ordering="grant__account_email")
    def account_cell(self, connection: Connection) -> SafeString:
        return format_html(
            '{}<div class="atlassian-oauth-quiet">{}</div>{}',
            admin_link(connection.grant, breakable_email(str(connection.grant))),
            site_names(connection.grant),
            site_notes(connection),
        )

    @admin.display(description=_("Atlassian sites used"))
    def sites_used(self, connection: Connection) -> SafeString | str:
        lines = []
        for site in resources.default_sites(connection):
            name = site.resource.name if site.resource else ""
            if site.state == resources.SiteState.CHOSEN:
                text = _("%(product)s: %(site)s") % {"product": site.product_name, "site": name}
            elif site.state == resources.SiteState.ONLY:
                text = _("%(product)s: %(site)s (the only one)") % {
                    "product": site.product_name,
                    "site": name,
                }
            elif site.state == resources.SiteState.GONE:
                text = _(
                    "%(product)s: %(site)s is no longer reachable; the user has to choose "
                    "another on the status page"
                ) % {"product": site.product_name, "site": name}
            else:
                text = _(
                    "%(product)s: not chosen yet; the account reaches several, the user "
                    "chooses on the status page"
                ) % {"product": site.product_name}
            lines.append((text,))
        return format_html_join("", "<div>{}</div>", lines) if lines else EMPTY

    @admin.display(description=_("grant shared with"))
    def shared_with(self, connection: Connection) -> str:
        domains = resources.shared_with(connection)
        if not domains:
            return str(_("No other site"))
        return str(
            _("%(sites)s: reconnecting or revoking the grant affects them too")
            % {"sites": ", ".join(domains)}
        )

    @admin.action(description=_("Disconnect"), permissions=["disconnect_connection"])
    def disconnect(
        self, request: HttpRequest, queryset: QuerySet[Connection]
    ) -> TemplateResponse | None:
        connections = list(queryset.select_related("user", "site", "grant"))
        if not connections:
            self.nothing_selected(request)
            return None
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Disconnect these connections?"),
            "question": _(
                "Each user below loses their Jira connection on that site and has to connect "
                "again. A grant that no connection uses any more is deleted, tokens first."
            ),
            "button": _("Yes, disconnect"),
            "action": "disconnect",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": [str(c.pk) for c in connections],
            "media": self.media,
        }
        if request.POST.get("confirm") != "yes":
            context["connection_rows"] = [
                {"connection": c, "account": str(c.grant)} for c in connections
            ]
            return TemplateResponse(request, "atlassian_oauth/admin/action_confirm.html", context)
        rows = []
        for connection in connections:
            label = f"{connection.user.get_username()} on {connection.site}"
            account = str(connection.grant)
            connect.disconnect(connection, actor=Event.Actor.ADMIN)
            rows.append({"label": label, "account": account, "result": _("Disconnected.")})
        context["connection_rows"] = rows
        context["mode"] = "inline"
        return TemplateResponse(request, "atlassian_oauth/admin/action_result.html", context)


class ResourceInline(admin.TabularInline):
    model = Resource
    extra = 0
    can_delete = False
    fields = readonly_fields = ("name", "url", "cloud_id", "scope_text")
    verbose_name_plural = _("Atlassian sites this grant reaches")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("scopes"))
    def scope_text(self, resource: Resource) -> str:
        return " ".join(resource.scopes)


class ConnectionInline(admin.TabularInline):
    model = Connection
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = ("user", "email", "site", "connected_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        return super().get_queryset(request).select_related("user", "site")

    @admin.display(description=_("email"))
    def email(self, connection: Connection) -> str:
        return user_email(connection.user) or EMPTY


@admin.register(Grant)
class GrantAdmin(HealthAdminMixin, GrantColumns, admin.ModelAdmin):
    list_display = (
        "account_cell",
        "health_cell",
        "expires_in",
        "refresh_cell",
        "last_error",
    )
    list_display_links = ("account_cell",)
    change_list_template = "atlassian_oauth/admin/health_change_list.html"
    list_filter = (HealthFilter, ("connections__site", SiteFilter), *grant_filters(""))
    list_per_page = 50
    change_form_template = "atlassian_oauth/admin/grant_change_form.html"
    actions = ("refresh_now", "clear_backoff")
    fieldsets = (
        (
            _("Account"),
            {"fields": ("account_name", "account_email", "account_id", "app", "health", "since")},
        ),
        (
            _("Tokens"),
            {
                "fields": (
                    "access_token_expires_at",
                    "access_token_fingerprint",
                    "refresh_token_fingerprint",
                    "scopes",
                    "consented_at",
                    "consent_ends",
                    "refresh_token_issued_at",
                    "status",
                ),
                "description": _(
                    "Fingerprints are one-way: equal fingerprints mean the same token, and "
                    "nothing else can be learnt from them."
                ),
            },
        ),
        (
            _("Refresh"),
            {
                "fields": (
                    "last_refreshed_at",
                    "refresh_failures",
                    "last_failure",
                    "full_last_error",
                    "next_refresh_at",
                    "lease",
                    "version",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = (
        *("account_name", "account_email", "account_id", "app", "health", "since"),
        *("access_token_expires_at", "access_token_fingerprint", "refresh_token_fingerprint"),
        *("scopes", "consented_at", "consent_ends", "refresh_token_issued_at", "status"),
        *("last_refreshed_at", "refresh_failures", "last_failure", "full_last_error"),
        *("next_refresh_at", "lease", "version", "created_at", "updated_at"),
    )
    inlines = (ConnectionInline, ResourceInline)

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (
            "account_id",
            "account_email",
            "account_name",
            *user_search_fields("connections__user__"),
            "resources__name",
            "resources__url",
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Grant]:
        grants: QuerySet[Grant] = super().get_queryset(request)
        sites = allowed_sites(request)
        if sites is not None:
            grants = grants.filter(grants_on(sites))
        return grants.annotate(health_state=health_expression(), **sort_keys("")).prefetch_related(
            Prefetch("connections", Connection.objects.select_related("user")),
            Prefetch("resources", Resource.objects.only("grant", "name", "url")),
        )

    def grant_of(self, row: Grant) -> Grant:
        return row

    def owner_of(self, row: Grant) -> str:
        return owners(row)

    def selected_grant_ids(self, queryset: QuerySet) -> list[int]:
        return sorted(queryset.values_list("pk", flat=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # grants come only from a user's consent

    def has_change_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        return False  # facts from Atlassian and the refresh machinery; the actions change them

    def has_delete_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        # Disconnect its connections instead: that logs who did it, and the grant goes with
        # the last one.
        return False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        grant = self.get_object(request, object_id)
        if grant is not None:
            events = Paginator(
                Event.objects.filter(grant=grant).select_related("user", "site"),
                EVENTS_PER_PAGE,
            )
            extra["events_page"] = events.get_page(request.GET.get("events"))
            extra["events_url"] = (
                reverse("admin:atlassian_oauth_event_changelist") + f"?grant__id__exact={grant.pk}"
            )
            extra["can_refresh"] = self.has_refresh_grant_permission(request)
            # For events without a user or site of their own (the beat's).
            extra["grant_users"] = owners(grant)
            extra["grant_sites"] = ", ".join(
                sorted({str(c.site) for c in grant.connections.select_related("site")})
            )
            extra["changelist_url"] = reverse("admin:atlassian_oauth_grant_changelist")
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description=_("Atlassian account"), ordering="account_email")
    def account(self, grant: Grant) -> str:
        return str(grant)

    @admin.display(description=_("users"))
    def users(self, grant: Grant) -> str:
        return owners(grant) or EMPTY

    @admin.display(description=_("Atlassian account"), ordering="account_email")
    def account_cell(self, grant: Grant) -> SafeString:
        return format_html(
            '{}<div class="atlassian-oauth-quiet">{}</div><div class="atlassian-oauth-quiet">{}'
            "</div>",
            breakable_email(str(grant)),
            owners(grant) or EMPTY,
            site_names(grant),
        )

    @admin.display(description=_("app (client ID)"))
    def app(self, grant: Grant) -> str:
        return grant.client_id

    @admin.display(description=_("access token fingerprint"))
    def access_token_fingerprint(self, grant: Grant) -> str:
        return fingerprint(grant, "access_token")

    @admin.display(description=_("refresh token fingerprint"))
    def refresh_token_fingerprint(self, grant: Grant) -> str:
        return fingerprint(grant, "refresh_token")

    @admin.display(description=_("consent ends"))
    def consent_ends(self, grant: Grant) -> SafeString | str:
        return relative(consent_expires_at(grant))

    @admin.display(description=_("last error"))
    def full_last_error(self, grant: Grant) -> str:
        return scrub(grant.last_error) or EMPTY

    @admin.display(description=_("refresh lease"))
    def lease(self, grant: Grant) -> str:
        # Whether a worker holds the refresh, and until when; the claim's token is not shown.
        until = grant.refresh_lock_until
        if not grant.refresh_lock_token or until is None or until <= timezone.now():
            return str(_("free"))
        return str(_("held by a worker until %s")) % date_format(
            timezone.localtime(until), "DATETIME_FORMAT"
        )


# ---- events ------------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "actor", "who", "email", "on_site", "account", "summary")
    list_filter = ("kind", "actor", EventSiteFilter, ("created_at", admin.DateFieldListFilter))
    date_hierarchy = "created_at"
    list_select_related = ("user", "site", "grant")
    list_per_page = 100
    readonly_fields = (
        "created_at",
        "kind",
        "actor",
        "who",
        "email",
        "on_site",
        "account",
        "account_id",
        "message",
        "details",
    )
    fields = readonly_fields

    class Media:
        css = {"all": ("atlassian_oauth/admin.css",)}

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (
            "account_id",
            "grant__account_email",
            *user_search_fields("user__"),
            *user_search_fields("grant__connections__user__"),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        events: QuerySet[Event] = super().get_queryset(request)
        sites = allowed_sites(request)
        if sites is not None:
            events = events.filter(Q(site__in=sites) | Q(grants_on(sites, "grant__")))
        return events.defer("grant__access_token", "grant__refresh_token").prefetch_related(
            Prefetch("grant__connections", Connection.objects.select_related("user", "site"))
        )

    def connections_of(self, event: Event) -> list[Connection]:
        """The event's own user and site, else those of the grant's connections (beat events)."""
        if event.grant is None:
            return []
        return list(event.grant.connections.all())

    @admin.display(description=_("user"))
    def who(self, event: Event) -> str:
        if event.user is not None:
            return event.user.get_username()
        return ", ".join(c.user.get_username() for c in self.connections_of(event)) or EMPTY

    @admin.display(description=_("email"))
    def email(self, event: Event) -> str:
        if event.user is not None:
            return user_email(event.user) or EMPTY
        emails = [user_email(c.user) for c in self.connections_of(event)]
        return ", ".join(e for e in emails if e) or EMPTY

    @admin.display(description=_("site"))
    def on_site(self, event: Event) -> str:
        if event.site is not None:
            return str(event.site)
        return ", ".join(sorted({str(c.site) for c in self.connections_of(event)})) or EMPTY

    @admin.display(description=_("grant"))
    def account(self, event: Event) -> SafeString | str:
        if event.grant is None:
            return event.account_id or EMPTY
        return admin_link(event.grant)

    @admin.display(description=_("message"))
    def summary(self, event: Event) -> SafeString:
        text = scrub(event.message)
        return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(80))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # the log is a record: read it, never edit it

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # not even superusers; retention is the cleanup task's job


# ---- Atlassian apps ----------------------------------------------------------------------------


class AtlassianAppForm(forms.ModelForm):
    new_client_secret = forms.CharField(
        label=_("Client secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_(
            "Write-only: stored encrypted, never shown. Leave empty to keep the current one."
        ),
    )

    callback_url = forms.URLField(
        label=_("Callback URL"),
        required=False,
        help_text=AtlassianApp._meta.get_field("callback_url").help_text,
        **URLFIELD_SCHEME,
    )

    class Meta:
        model = AtlassianApp
        fields = ("site", "client_id", "scopes", "callback_url")

    def clean_scopes(self) -> str:
        scopes: str = self.cleaned_data.get("scopes", "")
        missing = [scope for scope in REQUIRED_SCOPES if scope not in scopes.split()]
        if scopes.strip() and missing:
            raise forms.ValidationError(
                _(
                    "Add %(missing)s: without offline_access Atlassian sends no refresh token, "
                    "so every connection stops within an hour; without read:me the app cannot "
                    "tell whose account was connected. (Leave the field empty to use the "
                    "ATLASSIAN_OAUTH['SCOPES'] setting.)"
                ),
                code="required_scopes",
                params={"missing": " and ".join(missing)},
            )
        return scopes

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.instance.pk and not cleaned.get("new_client_secret"):
            self.add_error("new_client_secret", _("A new app needs its client secret."))
        return cleaned

    def save(self, commit: bool = True) -> AtlassianApp:
        app: AtlassianApp = super().save(commit=False)
        if self.cleaned_data.get("new_client_secret"):
            app.client_secret = self.cleaned_data["new_client_secret"]
        if commit:
            app.save()
        return app


@admin.register(AtlassianApp)
class AtlassianAppAdmin(admin.ModelAdmin):
    form = AtlassianAppForm
    list_display = (
        *("site", "client_id", "scopes", "callback_url", "has_secret", "updated_at"),
        "personal_data_report",
    )
    search_fields = ("site__domain", "client_id")
    fields = (
        *("site", "client_id", "new_client_secret", "scopes", "callback_url"),
        "personal_data_report",
    )
    readonly_fields = ("personal_data_report",)
    list_select_related = ("site",)
    actions = ("test_credentials",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AtlassianApp]:
        apps: QuerySet[AtlassianApp] = super().get_queryset(request)
        sites = allowed_sites(request)
        return apps if sites is None else apps.filter(site__in=sites)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "site":
            kwargs["queryset"] = visible_sites(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("personal data report"))
    def personal_data_report(self, app: AtlassianApp) -> SafeString:
        return report_summary(AccountReport.objects.filter(client_id=app.client_id).first())

    @admin.display(boolean=True, description=_("secret set"))
    def has_secret(self, app: AtlassianApp) -> bool:
        # Without decrypting: the list page needs no key for this.
        return encrypted_field(AtlassianApp, "client_secret").has_value(app)

    @admin.action(description=_("Test these credentials with Atlassian"), permissions=["change"])
    def test_credentials(self, request: HttpRequest, queryset: QuerySet[AtlassianApp]) -> None:
        for app in queryset:
            check = operations.check_credentials(app)
            self.message_user(
                request,
                f"{app}: {check.message}",
                messages.SUCCESS if check.ok else messages.ERROR,
            )


def shared_sites_count() -> Coalesce:
    """How many other sites a connection's grant has connections on (a subquery)."""
    others = (
        Connection.objects.filter(grant=OuterRef("grant"))
        .exclude(site=OuterRef("site"))
        .order_by()
        .values("grant")
        .annotate(count=Count("site", distinct=True))
        .values("count")
    )
    return Coalesce(Subquery(others), 0)


# ---- personal data reports ---------------------------------------------------------------------


def report_summary(report: AccountReport | None) -> SafeString:
    """The last personal data report of an app in a line: when, the outcome, the counts and
    when the next is due; a failure in the error style."""
    if report is None or report.last_run_at is None:
        return format_html("{}", _("Not reported yet"))
    text = _(
        "%(outcome)s %(when)s. Accounts: %(accounts)d, requests: %(requests)d, closed "
        "(erased): %(closed)d, updated: %(updated)d"
    ) % {
        "outcome": report.get_outcome_display(),
        "when": date_format(timezone.localtime(report.last_run_at), "DATETIME_FORMAT"),
        "accounts": report.accounts,
        "requests": report.requests,
        "closed": report.closed,
        "updated": report.updated,
    }
    parts = [f"{text}."]
    if report.error:
        parts.append(report.error)  # the app's own words: no token, code or secret
    if report.next_report_at is not None:
        when = date_format(timezone.localtime(report.next_report_at), "DATETIME_FORMAT")
        parts.append(_("Next due %(when)s.") % {"when": when})
    text = " ".join(parts)
    if report.outcome == AccountReport.Outcome.REPORTED:
        return format_html("{}", text)
    return format_html('<span class="atlassian-oauth-error">{}</span>', text)


@admin.register(AccountReport)
class AccountReportAdmin(admin.ModelAdmin):
    """Read only: the last personal data report of every app, the settings' default app too
    (it has no Atlassian app row to show it on)."""

    list_display = ("client_id", "used_by", "outcome", "summary")
    list_filter = ("outcome",)
    readonly_fields = (
        *("client_id", "used_by", "outcome", "last_run_at", "reported_at", "next_report_at"),
        *("accounts", "requests", "closed", "updated", "failures", "error", "cycle_period"),
    )
    fields = readonly_fields

    class Media:
        css = {"all": ("atlassian_oauth/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccountReport]:
        reports: QuerySet[AccountReport] = super().get_queryset(request)
        sites = allowed_sites(request)
        if sites is None:
            return reports
        # Staff scoped to sites see the reports of their sites' own apps.
        own = AtlassianApp.objects.filter(site__in=sites).values("client_id")
        return reports.filter(client_id__in=own)

    @admin.display(description=_("used by"))
    def used_by(self, report: AccountReport) -> str:
        sites = sorted(
            AtlassianApp.objects.filter(client_id=report.client_id).values_list(
                "site__domain", flat=True
            )
        )
        from .conf import conf  # the default app's client id, read live

        if report.client_id == conf.CLIENT_ID:
            sites.insert(0, str(_("the default app (settings)")))
        return ", ".join(sites) or EMPTY

    @admin.display(description=_("last report"))
    def summary(self, report: AccountReport) -> SafeString:
        return report_summary(report)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AccountReport | None = None) -> bool:
        return False  # written by the reporting runs only

    def has_delete_permission(self, request: HttpRequest, obj: AccountReport | None = None) -> bool:
        return False
