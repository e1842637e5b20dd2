from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from waffle.apps import WaffleConfig


class BackOfficeConfig(AppConfig):
    """The back-office: every admin page, the migration's pages and dashboard, support's
    lookups, `/metrics` and the operators' management commands. Models stay with the apps that
    own them (registry, flags, migration); this app only shows and drives them."""

    default = True
    name = "backoffice"
    verbose_name = "Back-office"


class BackOfficeAdminConfig(admin_apps.AdminConfig):
    """Django's admin app with the back-office's site (migration pages added)."""

    default = False
    default_site = "backoffice.site.WalletAdminSite"


class FeatureFlagsConfig(WaffleConfig):
    """django-waffle, named in the admin's breadcrumbs and titles for what it holds."""

    default = False
    verbose_name = "Feature flags"
