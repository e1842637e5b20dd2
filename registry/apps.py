from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Relational registries: wallet key -> TigerBeetle account, transaction -> transfer."""

    name = "registry"
    verbose_name = "Wallets and transactions"
