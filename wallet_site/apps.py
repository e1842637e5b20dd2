from django.apps import AppConfig


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
