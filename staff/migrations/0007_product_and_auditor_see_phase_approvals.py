"""Product (who change the phase) decide each other's phase change requests in "Phase
approvals"; the Auditor role reads them (four eyes, issue 27)."""

from django.db import migrations

from flags.role_grants import grant, revoke

GRANTS = {
    "Product": [("staff", "view_phaseapproval")],
    "Auditor": [("staff", "view_phaseapproval")],
}


def grant_phase_approvals(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_phase_approvals(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [("staff", "0006_phase_approval")]

    operations = [migrations.RunPython(grant_phase_approvals, revoke_phase_approvals)]
