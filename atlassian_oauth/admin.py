"""Admin: per-site apps (secret write-only), and the health of every grant and connection.

No page shows a token or secret: encrypted fields have no form field, and nothing here lists them.
"""

from __future__ import annotations

from typing import Any

import django
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import connect
from .health import grant_health
from .models import AtlassianApp, Connection, Event, Grant, Resource, health_expression

# Django 5 warns unless told which scheme a bare host gets; callbacks are https.
URLFIELD_SCHEME: dict[str, Any] = {"assume_scheme": "https"} if django.VERSION >= (5, 0) else {}


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
    list_display = ("site", "client_id", "scopes", "callback_url", "has_secret", "updated_at")
    search_fields = ("site__domain", "client_id")
    fields = ("site", "client_id", "new_client_secret", "scopes", "callback_url")

    @admin.display(boolean=True, description=_("secret set"))
    def has_secret(self, app: AtlassianApp) -> bool:
        # Without decrypting: the list page needs no key for this.
        return AtlassianApp._meta.get_field("client_secret").has_value(app)


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


def _health_badge(grant: Grant, state: str | None) -> SafeString:
    health = grant_health(grant, state)
    return format_html(
        '<span class="atlassian-oauth-health-{}" title="{}">{}</span>',
        health.level,
        health.advice,
        health.label,
    )


class ResourceInline(admin.TabularInline):
    model = Resource
    extra = 0
    can_delete = False
    fields = readonly_fields = ("name", "url", "cloud_id", "scopes")

    def has_add_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        return False


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "health",
        "status",
        "access_token_expires_at",
        "last_refreshed_at",
        "refresh_failures",
        "connection_count",
        "client_id",
    )
    list_filter = ("status", "client_id")
    search_fields = ("account_id", "account_email", "account_name")
    readonly_fields = (
        "health",
        "account_id",
        "account_name",
        "account_email",
        "client_id",
        "status",
        "scopes",
        "access_token_expires_at",
        "consented_at",
        "refresh_token_issued_at",
        "last_refreshed_at",
        "next_refresh_at",
        "refresh_failures",
        "last_error",
        "version",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = (ResourceInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Grant]:
        grants: QuerySet[Grant] = super().get_queryset(request)
        return grants.annotate(
            connection_total=Count("connections"), health_state=health_expression()
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # grants come only from a user's consent

    def has_delete_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        # Disconnect its connections instead: that logs who did it, and the grant goes with
        # the last one.
        return False

    @admin.display(description=_("health"))
    def health(self, grant: Grant) -> SafeString:
        return _health_badge(grant, getattr(grant, "health_state", None))

    @admin.display(description=_("connections"), ordering="connection_total")
    def connection_count(self, grant: Grant) -> int:
        return getattr(grant, "connection_total", 0)


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ("user", "site", "account", "health", "connected_at")
    list_filter = ("site", "grant__status")
    list_select_related = ("user", "site", "grant")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (*user_search_fields("user__"), "grant__account_email", "grant__account_id")

    readonly_fields = ("user", "site", "grant", "health", "connected_at", "updated_at")
    fields = readonly_fields
    actions = ("disconnect_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users connect themselves through Atlassian's consent page

    def has_delete_permission(self, request: HttpRequest, obj: Connection | None = None) -> bool:
        return False  # the "Disconnect" action logs the event; a bare delete would not

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("atlassian_oauth.delete_connection"):
            actions.pop("disconnect_selected", None)
        return actions

    @admin.display(description=_("Atlassian account"), ordering="grant__account_email")
    def account(self, connection: Connection) -> Grant:
        return connection.grant

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        connections: QuerySet[Connection] = super().get_queryset(request)
        return connections.annotate(grant_health_state=health_expression("grant__"))

    @admin.display(description=_("health"))
    def health(self, connection: Connection) -> SafeString:
        return _health_badge(connection.grant, getattr(connection, "grant_health_state", None))

    @admin.action(description=_("Disconnect selected connections"))
    def disconnect_selected(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        count = 0
        for connection in queryset.select_related("user", "site", "grant"):
            connect.disconnect(connection, actor=Event.Actor.ADMIN)
            count += 1
        self.message_user(
            request,
            ngettext(
                "Disconnected %(count)d connection.", "Disconnected %(count)d connections.", count
            )
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "actor", "user", "site", "account_id", "message")
    list_filter = ("kind", "actor", "site")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return ("account_id", *user_search_fields("user__"), "message")

    date_hierarchy = "created_at"
    list_select_related = ("user", "site")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # the log is a record: read it, never edit it

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # not even superusers; retention is the cleanup task's job
