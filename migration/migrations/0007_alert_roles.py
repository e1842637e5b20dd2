"""The roles see the alerts and the guard's checks: Support and Product view them; Product,
which steers the migration, may also resolve an alert (`resolve_alert`); an administrator
may give that to a Support user by name."""

from django.db import migrations

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
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; the groups need them now
    # (restoring models_module as migration 0005 explains).
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


def revoke_alert_roles(apps, schema_editor):
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
        ("migration", "0006_guard_and_alerts"),
        ("migration", "0005_blocker_roles"),
    ]

    operations = [migrations.RunPython(grant_alert_roles, revoke_alert_roles)]
