"""The index and breadcrumbs say "actions on blockers" (Django made "action on a blockers")."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('migration', '0008_reconciliation_outside_share'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='blockeraction',
            options={'ordering': ['-at', '-id'], 'verbose_name': 'action on a blocker', 'verbose_name_plural': 'actions on blockers'},
        ),
    ]
