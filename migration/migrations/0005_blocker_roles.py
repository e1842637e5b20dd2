"""The roles take the actions on what blocks the migration: Support and Product may requeue
parked outbox entries and run a reconciliation now; Product may also re-check a wallet (the
dashboard's blocker), which Support already could; only Support repairs the transfer registry
from TigerBeetle. Both see the actions' audit trail."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Support": [
        ("migration", "run_reconciliation"),
        ("migration", "requeue_parked_entries"),
        ("migration", "repair_transfer_registry"),
        ("migration", "view_blockeraction"),
    ],
    "Product": [
        ("migration", "run_reconciliation"),
        ("migration", "requeue_parked_entries"),
        ("migration", "recheck_wallet"),
        ("migration", "view_blockeraction"),
    ],
}


def grant_blocker_actions(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_blocker_actions(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("migration", "0004_blocker_actions_and_transfer_differences"),
        ("flags", "0004_phase_changes"),
    ]

    operations = [migrations.RunPython(grant_blocker_actions, revoke_blocker_actions)]
