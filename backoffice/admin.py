"""Django's admin autodiscovery imports this module: it registers every model the back-office
shows (each module registers its own)."""

from backoffice import (
    alert_admin,
    approval_admin,
    event_admin,
    flag_admin,
    hold_admin,
    legacy_case_admin,
    migration_admin,
    monitor_admin,
    phase_approval_admin,
    staff_admin,
    transfer_admin,
    wallet_admin,
)

__all__ = [
    "alert_admin",
    "approval_admin",
    "event_admin",
    "flag_admin",
    "hold_admin",
    "legacy_case_admin",
    "migration_admin",
    "monitor_admin",
    "phase_approval_admin",
    "staff_admin",
    "transfer_admin",
    "wallet_admin",
]
