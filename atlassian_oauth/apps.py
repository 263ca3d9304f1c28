from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AtlassianOAuthConfig(AppConfig):
    name = "atlassian_oauth"
    verbose_name = _("Atlassian OAuth")
    default_auto_field = "django.db.models.BigAutoField"
