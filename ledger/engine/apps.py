from django.apps import AppConfig


class EngineConfig(AppConfig):
    """The embedded ledger engine: TigerBeetle's semantics on the Django database."""

    name = "ledger.engine"
    label = "ledger_engine"
    verbose_name = "Embedded ledger engine"
