"""Holds (docs/holds.md): service accounts (the payment systems) place, capture, release and
read holds through the API; Support reads them and releases one a client is stuck with
(the admin's wallet page and the API). Product has nothing on holds."""

from django.db import migrations

from flags.role_grants import grant, revoke

SERVICE_ACCOUNT = "Service account"

GRANTS = {
    SERVICE_ACCOUNT: [
        ("registry", "add_wallethold"),
        ("registry", "capture_wallethold"),
        ("registry", "release_wallethold"),
        ("registry", "view_wallethold"),
    ],
    "Support": [
        ("registry", "view_wallethold"),
        ("registry", "release_wallethold"),
    ],
}


def grant_hold_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_hold_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0007_phase_change_guard_figures"),
        ("flags", "0003_api_roles"),
        ("registry", "0011_wallet_holds"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_hold_roles, revoke_hold_roles)]
