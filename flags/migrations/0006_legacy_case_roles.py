"""Support decides on legacy wallets whose MongoDB fields disagree (acknowledges them, with a
reason) and sees those decisions; Product sees them too, since the phase gates set those
wallets aside. The phase criterion's override is given to no group: an administrator gives
it to the person who may take it (the product lead), by name."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Support": [
        ("migration", "acknowledge_legacy_case"),
        ("migration", "view_acknowledgedlegacycase"),
    ],
    "Product": [("migration", "view_acknowledgedlegacycase")],
}


def grant_legacy_case_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_legacy_case_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0005_phase_change_criterion_and_override"),
        ("migration", "0003_acknowledged_legacy_cases"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_legacy_case_roles, revoke_legacy_case_roles)]
