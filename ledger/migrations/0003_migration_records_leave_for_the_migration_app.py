"""The migration's records (shadow comparisons, read routes, reconciliation runs and their
mismatches) move to the `migration` app. Their tables stay as they are, under their `ledger_`
names: this removes them from the ledger app's state only, and migration/0001 takes them over.

It runs after the roles were granted (flags 0002, 0003), whose permissions on these models were
created under the ledger app; migration/0002 moves those content types across."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0002_mismatch_resolution'),
        ('flags', '0003_api_roles'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='ReconciliationMismatch'),
                migrations.DeleteModel(name='ReconciliationRun'),
                migrations.DeleteModel(name='ReadRouteCount'),
                migrations.DeleteModel(name='ShadowComparison'),
            ],
            database_operations=[],
        ),
    ]
