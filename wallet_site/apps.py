from django.apps import AppConfig


class WalletSiteConfig(AppConfig):
    """The project: builds and installs the process's runtime once the apps are loaded; its
    own management commands (dev bootstrap) live here too."""

    default = True
    name = "wallet_site"
    verbose_name = "Wallet site"

    def ready(self) -> None:
        # Load-order breaker: the wiring imports the stores and their models, which the app
        # registry must have loaded first.
        from migration.runtime import install_process_runtime  # noqa: PLC0415
        from wallet_site import wiring  # noqa: PLC0415

        install_process_runtime(wiring.build_runtime())
