from django.apps import AppConfig


class WalletSiteConfig(AppConfig):
    """Project-level management commands (dev bootstrap) live here."""

    name = "wallet_site"
    verbose_name = "Wallet site"
