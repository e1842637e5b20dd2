from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class WalletSiteConfig(AppConfig):
    """Project-level management commands (dev bootstrap) live here."""

    default = True
    name = "wallet_site"
    verbose_name = "Wallet site"

    def ready(self) -> None:
        # Load-order breaker: the wiring imports the stores and their models, which the app
        # registry must have loaded first.
        from wallet_site import wiring  # noqa: PLC0415

        wiring.install()


class WalletAdminConfig(admin_apps.AdminConfig):
    """Django's admin app with the back-office's site (migration pages added)."""

    default = False
    default_site = "wallet_site.admin_site.WalletAdminSite"
