from django.apps import AppConfig


class LedgerConfig(AppConfig):
    """Wallet service, wallet stores and ledger backends."""

    name = "ledger"
    verbose_name = "Wallet ledger"
