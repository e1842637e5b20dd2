"""The back-office roles as groups: Support (wallets, transactions, voids, reconciliation)
and Product (migration flags and phases, the dashboard). Superusers need no group."""

from django.db import migrations

from flags.role_grants import create_permissions_now

ROLES = {
    "Support": [
        ("registry", "view_walletaccount"),
        ("registry", "view_wallettransfer"),
        ("registry", "void_wallettransfer"),
        ("ledger", "view_reconciliationrun"),
        ("ledger", "view_reconciliationmismatch"),
        ("ledger", "recheck_wallet"),
    ],
    "Product": [
        ("waffle", "view_switch"),
        ("waffle", "change_switch"),
        ("waffle", "add_switch"),
        ("waffle", "view_sample"),
        ("waffle", "change_sample"),
        ("waffle", "add_sample"),
        ("waffle", "view_flag"),
        ("flags", "view_flagchange"),
        ("flags", "view_milestone"),
        ("flags", "change_phase"),
        ("ledger", "view_migration_dashboard"),
        ("ledger", "view_reconciliationrun"),
        ("ledger", "view_reconciliationmismatch"),
        ("ledger", "view_shadowcomparison"),
    ],
}

MOVED_LATER = {"ledger": ["migration"]}


def create_roles(apps, schema_editor):
    create_permissions_now(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            # The ledger app's records later moved to the migration app, content types and
            # all (migration/0002); on the live registry (tests/roles.py) they are there.
            labels = [app_label, *MOVED_LATER.get(app_label, [])]
            group.permissions.add(
                Permission.objects.get(content_type__app_label__in=labels, codename=codename)
            )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0001_audit_and_milestones"),
        ("ledger", "0001_migration_observations"),
        ("registry", "0002_migration_bookkeeping"),
        ("waffle", "0004_update_everyone_nullbooleanfield"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
