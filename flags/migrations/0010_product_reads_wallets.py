"""Product managers follow a mismatch or a shadow comparison to its wallet and its
transactions, read-only (issue 26, point 6): they may view wallets and transactions, never
void or release a hold (those stay support's)."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Product": [("registry", "view_walletaccount"), ("registry", "view_wallettransfer")],
}


def grant_wallet_reading(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_wallet_reading(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [("flags", "0009_batch_roles")]

    operations = [migrations.RunPython(grant_wallet_reading, revoke_wallet_reading)]
