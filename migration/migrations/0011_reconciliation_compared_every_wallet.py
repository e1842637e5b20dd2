from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("migration", "0010_reconciliation_held"),
    ]

    operations = [
        migrations.AddField(
            model_name="reconciliationrun",
            name="compared_every_wallet",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "the run compared every MongoDB wallet with TigerBeetle (each at some moment "
                    "after it started): phase 4's entry then compares only the wallets changed "
                    "since"
                ),
            ),
        ),
    ]
