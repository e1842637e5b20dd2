"""The content types of the records the migration app took over move with them (app label
ledger -> migration), and with them their permissions: the groups that hold them (Support,
Product, and any made by hand) keep them, and admin history stays attached.

Should a content type already exist under the new label (created by a permission sync in
between), its twin's permissions are handed over to it before the old one goes."""

from django.db import migrations

MODELS = ["shadowcomparison", "readroutecount", "reconciliationrun", "reconciliationmismatch"]


def _move(apps, from_label, to_label):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for model in MODELS:
        old = ContentType.objects.filter(app_label=from_label, model=model).first()
        if old is None:
            continue
        new = ContentType.objects.filter(app_label=to_label, model=model).first()
        if new is None:
            old.app_label = to_label
            old.save(update_fields=["app_label"])
            continue
        for permission in Permission.objects.filter(content_type=old):
            twin, _ = Permission.objects.get_or_create(
                content_type=new, codename=permission.codename, defaults={"name": permission.name}
            )
            for group in permission.group_set.all():
                group.permissions.add(twin)
            for user in permission.user_set.all():
                user.user_permissions.add(twin)
        old.delete()


def forwards(apps, schema_editor):
    _move(apps, "ledger", "migration")


def backwards(apps, schema_editor):
    _move(apps, "migration", "ledger")


class Migration(migrations.Migration):

    dependencies = [
        ('migration', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
