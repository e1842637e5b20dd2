"""The roles take the actions on what blocks the migration: Support and Product may requeue
parked outbox entries and run a reconciliation now; Product may also re-check a wallet (the
dashboard's blocker), which Support already could; only Support repairs the transfer registry
from TigerBeetle. Both see the actions' audit trail."""

from django.db import migrations

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
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; the groups need them now.
    # tests/roles.py calls this with the live app registry: restore what was there, or later
    # post_migrate signals (after a test flush) would skip every app's permissions.
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def revoke_blocker_actions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GRANTS.items():
        group = Group.objects.filter(name=name).first()
        if group is None:
            continue
        for app_label, codename in wanted:
            group.permissions.remove(
                *Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("migration", "0004_blocker_actions_and_transfer_differences"),
        ("flags", "0004_phase_changes"),
    ]

    operations = [migrations.RunPython(grant_blocker_actions, revoke_blocker_actions)]
