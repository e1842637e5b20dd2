from django.apps import AppConfig
from django.conf import settings
from django.core.signals import setting_changed

from domain import ids


class _Namespace:
    """TB_ID_NAMESPACE as it stands: read at start-up and again whenever the setting changes
    (`override_settings` and pytest-django send `setting_changed`). Every derived id asks for
    it, three times a backfilled wallet, and a read of Django's lazy settings cost as much as
    a third of the hash."""

    value = ""


def _id_namespace() -> str:
    return _Namespace.value


def _on_setting_changed(*, setting: str, **_: object) -> None:
    if setting == "TB_ID_NAMESPACE":
        _Namespace.value = str(settings.TB_ID_NAMESPACE)


class LedgerConfig(AppConfig):
    """Wallet service, wallet stores and ledger backends."""

    name = "ledger"
    verbose_name = "Wallet ledger"

    def ready(self) -> None:
        # The ids are derived in the pure domain; the namespace they mix in is a setting.
        _Namespace.value = str(settings.TB_ID_NAMESPACE)
        setting_changed.connect(_on_setting_changed, dispatch_uid="ledger-id-namespace")
        ids.use_namespace_source(_id_namespace)
