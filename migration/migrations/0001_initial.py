"""The migration's records, taken over from the ledger app (ledger/0003) in Django's state
only: the tables exist already, under the `ledger_` names `Meta.db_table` keeps."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('ledger', '0003_migration_records_leave_for_the_migration_app'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ReconciliationRun',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('started_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('checked', models.PositiveIntegerField(default=0)),
                        ('matched', models.PositiveIntegerField(default=0)),
                        ('mismatched', models.PositiveIntegerField(default=0)),
                        ('rows_without_account', models.PositiveIntegerField(default=0)),
                        ('accounts_without_row', models.PositiveIntegerField(default=0)),
                        ('awaiting_backfill', models.PositiveIntegerField(default=0, help_text='legacy wallets not imported yet: not compared, not mismatches')),
                        ('duration_s', models.FloatField(blank=True, null=True)),
                        ('triggered_by', models.CharField(default='schedule', max_length=150)),
                        ('error', models.TextField(blank=True, default='')),
                        ('note', models.CharField(blank=True, default='', max_length=200)),
                    ],
                    options={
                        'db_table': 'ledger_reconciliationrun',
                        'ordering': ['-started_at'],
                        'permissions': [('view_migration_dashboard', 'Can view the migration dashboard'), ('recheck_wallet', 'Can re-check a wallet against both stores')],
                    },
                ),
                migrations.CreateModel(
                    name='ShadowComparison',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('client_id', models.CharField(db_index=True, max_length=128)),
                        ('country', models.CharField(max_length=3)),
                        ('currency', models.CharField(max_length=3)),
                        ('issuer', models.CharField(blank=True, default='', max_length=128)),
                        ('wallet_seq', models.BigIntegerField(help_text='the MongoDB wallet_seq the read saw')),
                        ('outcome', models.CharField(choices=[('match', 'Match'), ('mismatch', 'Mismatch'), ('missing', 'Missing'), ('skipped', 'Skipped')], max_length=8)),
                        ('mongo_credit_minor', models.BigIntegerField()),
                        ('mongo_debit_minor', models.BigIntegerField()),
                        ('mongo_historical_credit_minor', models.BigIntegerField()),
                        ('tb_credit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('tb_debit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('tb_historical_credit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('mismatched_fields', models.CharField(blank=True, default='', max_length=100)),
                        ('mongo_latency_us', models.PositiveIntegerField(blank=True, null=True)),
                        ('tb_latency_us', models.PositiveIntegerField(blank=True, null=True)),
                        ('detail', models.CharField(blank=True, default='', max_length=300)),
                        ('compared_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ],
                    options={
                        'db_table': 'ledger_shadowcomparison',
                        'ordering': ['-compared_at'],
                    },
                ),
                migrations.CreateModel(
                    name='ReadRouteCount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('hour', models.DateTimeField()),
                        ('route', models.CharField(choices=[('mongo', 'Mongo'), ('tigerbeetle', 'Tigerbeetle'), ('fallback', 'Fallback'), ('ryw', 'Read Your Writes')], max_length=12)),
                        ('count', models.BigIntegerField(default=0)),
                    ],
                    options={
                        'db_table': 'ledger_readroutecount',
                        'constraints': [models.UniqueConstraint(fields=('hour', 'route'), name='one_count_per_hour')],
                    },
                ),
                migrations.CreateModel(
                    name='ReconciliationMismatch',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('balance', 'Balance'), ('not_in_tb', 'Not In Tigerbeetle'), ('row_no_account', 'Row Without Account'), ('account_no_row', 'Account Without Row')], max_length=16)),
                        ('client_id', models.CharField(blank=True, db_index=True, default='', max_length=128)),
                        ('country', models.CharField(blank=True, default='', max_length=3)),
                        ('currency', models.CharField(blank=True, default='', max_length=3)),
                        ('issuer', models.CharField(blank=True, default='', max_length=128)),
                        ('tb_account_id_hex', models.CharField(blank=True, default='', max_length=32)),
                        ('mongo_credit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('mongo_debit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('mongo_historical_credit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('tb_credit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('tb_debit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('tb_historical_credit_minor', models.BigIntegerField(blank=True, null=True)),
                        ('pending_mirror_entries', models.PositiveIntegerField(default=0)),
                        ('resolved_at', models.DateTimeField(blank=True, help_text='when a re-check found both stores agreeing', null=True)),
                        ('resolved_by', models.CharField(blank=True, default='', max_length=150)),
                        ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='mismatches', to='migration.reconciliationrun')),
                    ],
                    options={
                        'db_table': 'ledger_reconciliationmismatch',
                        'verbose_name_plural': 'reconciliation mismatches',
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
