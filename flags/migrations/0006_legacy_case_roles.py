"""Support decides on legacy wallets whose MongoDB fields disagree (acknowledges them, with a
reason) and sees those decisions; Product sees them too, since the phase gates set those
wallets aside. The phase criterion's override is given to no group: an administrator gives
it to the person who may take it (the product lead), by name."""

from django.db import migrations

GRANTS = {
    "Support": [
        ("migration", "acknowledge_legacy_case"),
        ("migration", "view_acknowledgedlegacycase"),
    ],
    "Product": [("migration", "view_acknowledgedlegacycase")],
}


def grant_legacy_case_roles(apps, schema_editor):
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


def revoke_legacy_case_roles(apps, schema_editor):
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
        ("flags", "0005_phase_change_criterion_and_override"),
        ("migration", "0003_acknowledged_legacy_cases"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_legacy_case_roles, revoke_legacy_case_roles)]
