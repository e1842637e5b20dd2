"""Bulk writes (POST /api/batches): the service accounts (the payment systems calling the
API) may post batches; each item still needs its kind's own permission (credit, debit),
which the role already holds."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {"Service account": [("registry", "post_batches")]}


def grant_batch_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_batch_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0008_hold_roles"),
        ("registry", "0012_batch_permission"),
    ]

    operations = [migrations.RunPython(grant_batch_roles, revoke_batch_roles)]
