from django.db import migrations


def create_clock(apps, schema_editor):
    apps.get_model("ledger_engine", "Clock").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    """The one clock row every write locks; created here so no writer races to create it."""

    dependencies = [("ledger_engine", "0001_initial")]

    operations = [migrations.RunPython(create_clock, migrations.RunPython.noop)]
