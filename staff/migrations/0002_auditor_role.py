"""The Auditor role: reads the staff sign-in audit, the lockouts, who holds which role and
the migration's flag audit; acts on nothing (issue 27)."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Auditor": [
        ("staff", "view_authevent"),
        ("axes", "view_accessattempt"),
        ("auth", "view_user"),
        ("auth", "view_group"),
        ("flags", "view_flagchange"),
        ("flags", "view_milestone"),
    ],
}


def grant_auditor_role(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_auditor_role(apps, schema_editor):
    revoke(apps, GRANTS)
    apps.get_model("auth", "Group").objects.filter(name__in=GRANTS, permissions=None).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0001_initial"),
        ("axes", "0010_accessattemptexpiration"),
        ("flags", "0010_product_reads_wallets"),
    ]

    operations = [migrations.RunPython(grant_auditor_role, revoke_auditor_role)]
