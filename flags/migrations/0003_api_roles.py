"""The REST API's roles: service accounts (the payment systems calling the API) read
balances and post credits and debits; Support also reads through the API (and voids, with
the admin's void permission). Product has nothing on the wallet API."""

from django.db import migrations

from flags.role_grants import grant

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
    grant(apps, GRANTS)


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
