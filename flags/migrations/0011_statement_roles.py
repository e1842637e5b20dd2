"""Wallet statements (issue 24, item 4): support opens them from the wallet page, and the
service accounts (the payment systems calling the API) download them as CSV."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Support": [("registry", "view_statement")],
    "Service account": [("registry", "view_statement")],
}


def grant_statement_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_statement_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0010_product_reads_wallets"),
        ("registry", "0013_statement_permission"),
    ]

    operations = [migrations.RunPython(grant_statement_roles, revoke_statement_roles)]
