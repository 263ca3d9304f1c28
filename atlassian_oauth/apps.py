from django.apps import AppConfig
from django.db.models.signals import post_delete
from django.utils.translation import gettext_lazy as _


class AtlassianOAuthConfig(AppConfig):
    name = "atlassian_oauth"
    verbose_name = _("Atlassian OAuth")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .handlers import delete_unused_grant
        from .models import Connection

        post_delete.connect(
            delete_unused_grant, sender=Connection, dispatch_uid="atlassian_oauth_unused_grant"
        )
