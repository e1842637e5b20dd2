"""The role groups for tests: the data migrations create them, but a transactional test's
flush deletes them, so tests that need a role make sure it exists (by the same code)."""

from __future__ import annotations

import importlib

from django.apps import apps
from django.contrib.auth.models import Group

_roles_migration = importlib.import_module("flags.migrations.0002_roles")
_api_roles_migration = importlib.import_module("flags.migrations.0003_api_roles")
_legacy_case_roles_migration = importlib.import_module("flags.migrations.0006_legacy_case_roles")
_blocker_roles_migration = importlib.import_module("migration.migrations.0005_blocker_roles")
_alert_roles_migration = importlib.import_module("migration.migrations.0007_alert_roles")
_hold_roles_migration = importlib.import_module("flags.migrations.0008_hold_roles")
_batch_roles_migration = importlib.import_module("flags.migrations.0009_batch_roles")
_product_wallets_migration = importlib.import_module("flags.migrations.0010_product_reads_wallets")
_auditor_migration = importlib.import_module("staff.migrations.0002_auditor_role")
_void_approval_migration = importlib.import_module("staff.migrations.0005_support_approves_voids")
_statement_roles_migration = importlib.import_module("flags.migrations.0011_statement_roles")
_phase_approval_migration = importlib.import_module(
    "staff.migrations.0007_product_and_auditor_see_phase_approvals"
)
_event_roles_migration = importlib.import_module("events.migrations.0002_event_roles")

SERVICE_ACCOUNT = _api_roles_migration.SERVICE_ACCOUNT


def role(name: str) -> Group:
    if not Group.objects.filter(name=name).exists():
        _roles_migration.create_roles(apps, None)
        _api_roles_migration.grant_api_roles(apps, None)
        _legacy_case_roles_migration.grant_legacy_case_roles(apps, None)
        _blocker_roles_migration.grant_blocker_actions(apps, None)
        _alert_roles_migration.grant_alert_roles(apps, None)
        _hold_roles_migration.grant_hold_roles(apps, None)
        _batch_roles_migration.grant_batch_roles(apps, None)
        _product_wallets_migration.grant_wallet_reading(apps, None)
        _auditor_migration.grant_auditor_role(apps, None)
        _void_approval_migration.grant_void_approval(apps, None)
        _statement_roles_migration.grant_statement_roles(apps, None)
        _phase_approval_migration.grant_phase_approvals(apps, None)
        _event_roles_migration.grant_event_roles(apps, None)
    return Group.objects.get(name=name)
