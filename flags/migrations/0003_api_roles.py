"""The REST API's roles: service accounts (the payment systems calling the API) read
balances and post credits and debits; Support also reads through the API (and voids, with
the admin's void permission). Product has nothing on the wallet API."""

from django.db import migrations

SERVICE_ACCOUNT = "Service account"

GRANTS = {
    SERVICE_ACCOUNT: [
        ("registry", "read_wallets"),
        ("registry", "credit_wallets"),
        ("registry", "debit_wallets"),
    ],
    "Support": [("registry", "read_wallets")],
}


def grant_api_roles(apps, schema_editor):
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


def revoke_api_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    Group.objects.filter(name=SERVICE_ACCOUNT).delete()
    support = Group.objects.filter(name="Support").first()
    if support is not None:
        support.permissions.remove(
            *Permission.objects.filter(content_type__app_label="registry", codename="read_wallets")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0002_roles"),
        ("registry", "0004_api_permissions_and_made_by"),
    ]

    operations = [migrations.RunPython(grant_api_roles, revoke_api_roles)]
