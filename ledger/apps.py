from django.apps import AppConfig
from django.conf import settings

from domain import ids


def _id_namespace() -> str:
    return str(settings.TB_ID_NAMESPACE)


class LedgerConfig(AppConfig):
    """Wallet service, wallet stores and ledger backends."""

    name = "ledger"
    verbose_name = "Wallet ledger"

    def ready(self) -> None:
        # The ids are derived in the pure domain; the namespace they mix in is a setting.
        ids.use_namespace_source(_id_namespace)
