from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class WalletSiteConfig(AppConfig):
    """Project-level management commands (dev bootstrap) live here."""

    default = True
    name = "wallet_site"
    verbose_name = "Wallet site"


class WalletAdminConfig(admin_apps.AdminConfig):
    """Django's admin app with the back-office's site (migration pages added)."""

    default = False
    default_site = "wallet_site.admin_site.WalletAdminSite"
