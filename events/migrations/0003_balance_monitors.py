"""Balance monitors (issue 24, item 3; events/monitors.py): the rules, their state per
wallet, the `crossed` event type with its monitor; support manages monitors in the admin."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from flags.role_grants import grant, revoke

GRANTS = {
    "Service account": [
        ("events", "view_balancemonitor"),
        ("events", "add_balancemonitor"),
        ("events", "change_balancemonitor"),
    ],
    "Support": [
        ("events", "view_balancemonitor"),
        ("events", "add_balancemonitor"),
        ("events", "change_balancemonitor"),
        ("events", "view_monitorstate"),
    ],
}


def grant_monitor_roles(apps, schema_editor):
    grant(apps, GRANTS)


def revoke_monitor_roles(apps, schema_editor):
    revoke(apps, GRANTS)


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0002_event_roles'),
    ]

    operations = [
        migrations.CreateModel(
            name='BalanceMonitor',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(blank=True, default='', max_length=100)),
                ('currency', models.CharField(max_length=3)),
                ('client_id', models.CharField(blank=True, default='', max_length=128)),
                ('country', models.CharField(blank=True, default='', max_length=3)),
                ('issuer', models.CharField(blank=True, default='', max_length=128)),
                ('direction', models.CharField(choices=[('below', 'Below'), ('above', 'Above')], max_length=5)),
                ('threshold_minor', models.BigIntegerField(help_text="the line, in the currency's minor units")),
                ('active', models.BooleanField(default=True)),
                ('created_by', models.CharField(blank=True, default='', max_length=150)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.CreateModel(
            name='MonitorState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('wallet_ref', models.CharField(max_length=32)),
                ('client_id', models.CharField(max_length=128)),
                ('fired', models.BooleanField(default=False)),
                ('available_minor', models.BigIntegerField(help_text='the balance it last saw')),
                ('last_event_id', models.CharField(help_text='the event of that balance', max_length=32)),
                ('firings', models.PositiveIntegerField(default=0)),
                ('changed_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name='event',
            name='event_type_known',
        ),
        migrations.AddField(
            model_name='event',
            name='caused_by',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.AddField(
            model_name='event',
            name='crossed_to',
            field=models.CharField(blank=True, default='', max_length=5),
        ),
        migrations.AlterField(
            model_name='event',
            name='type',
            field=models.CharField(choices=[('posted', 'Posted'), ('refused', 'Refused'), ('voided', 'Voided'), ('held', 'Held'), ('captured', 'Captured'), ('released', 'Released'), ('expired', 'Expired'), ('crossed', 'Crossed')], max_length=8),
        ),
        migrations.AddIndex(
            model_name='balancemonitor',
            index=models.Index(fields=['currency', 'active'], name='monitor_currency'),
        ),
        migrations.AddConstraint(
            model_name='balancemonitor',
            constraint=models.CheckConstraint(condition=models.Q(('threshold_minor__gt', 0)), name='monitor_threshold_positive'),
        ),
        migrations.AddConstraint(
            model_name='balancemonitor',
            constraint=models.CheckConstraint(condition=models.Q(('direction__in', ['below', 'above'])), name='monitor_direction_known'),
        ),
        migrations.AddConstraint(
            model_name='balancemonitor',
            constraint=models.CheckConstraint(condition=models.Q(('client_id', ''), models.Q(('country', ''), _negated=True), _connector='OR'), name='monitor_wallet_has_country'),
        ),
        migrations.AddField(
            model_name='event',
            name='monitor',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='firings', to='events.balancemonitor'),
        ),
        migrations.AddConstraint(
            model_name='event',
            constraint=models.CheckConstraint(condition=models.Q(('type__in', ['posted', 'refused', 'voided', 'held', 'captured', 'released', 'expired', 'crossed'])), name='event_type_known'),
        ),
        migrations.AddField(
            model_name='monitorstate',
            name='monitor',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='states', to='events.balancemonitor'),
        ),
        migrations.AddConstraint(
            model_name='monitorstate',
            constraint=models.UniqueConstraint(fields=('monitor', 'wallet_ref'), name='one_state_per_wallet'),
        ),
        migrations.RunPython(grant_monitor_roles, revoke_monitor_roles),
    ]
