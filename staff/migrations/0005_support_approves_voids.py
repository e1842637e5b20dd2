"""Support members approve each other's large voids (four eyes, issue 27)."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {"Support": [("staff", "approve_void"), ("staff", "view_voidapproval")]}


def grant_void_approval(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_void_approval(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [("staff", "0004_void_approval")]

    operations = [migrations.RunPython(grant_void_approval, revoke_void_approval)]
