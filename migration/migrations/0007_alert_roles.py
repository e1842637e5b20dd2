"""The roles see the alerts and the guard's checks: Support and Product view them; Product,
which steers the migration, may also resolve an alert (`resolve_alert`); an administrator
may give that to a Support user by name."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Support": [
        ("migration", "view_alert"),
        ("migration", "view_guardcheck"),
    ],
    "Product": [
        ("migration", "view_alert"),
        ("migration", "resolve_alert"),
        ("migration", "view_guardcheck"),
    ],
}


def grant_alert_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_alert_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("migration", "0006_guard_and_alerts"),
        ("migration", "0005_blocker_roles"),
    ]

    operations = [migrations.RunPython(grant_alert_roles, revoke_alert_roles)]
