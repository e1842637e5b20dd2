# One word per idea (issue #20): "backport" becomes "copy back". The two columns are renamed
# (ALTER TABLE ... RENAME COLUMN keeps every row and value); the partial index and the two
# CHECK constraints that name them are dropped and made again under the new words, since
# Django's state does not rewrite a condition when a field it names is renamed.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0008_transfer_void_id_index'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='wallettransfer',
            name='transfer_voided_when_voided_at',
        ),
        migrations.RemoveConstraint(
            model_name='wallettransfer',
            name='transfer_failed_never_backported',
        ),
        migrations.RemoveIndex(
            model_name='wallettransfer',
            name='transfer_backport_due',
        ),
        migrations.RenameField(
            model_name='wallettransfer',
            old_name='needs_backport',
            new_name='needs_copy_back',
        ),
        migrations.RenameField(
            model_name='wallettransfer',
            old_name='void_needs_backport',
            new_name='void_needs_copy_back',
        ),
        migrations.AddIndex(
            model_name='wallettransfer',
            index=models.Index(condition=models.Q(('needs_copy_back', True), ('void_needs_copy_back', True), _connector='OR'), fields=['created_at'], name='transfer_copy_back_due'),
        ),
        migrations.AddConstraint(
            model_name='wallettransfer',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('state', 'voided'), ('voided_at__isnull', False), ('voided_by__gt', '')), models.Q(models.Q(('state', 'voided'), _negated=True), ('void_needs_copy_back', False), ('void_reason', ''), ('void_tb_transfer_id_hex', ''), ('voided_at__isnull', True), ('voided_by', '')), _connector='OR'), name='transfer_voided_when_voided_at'),
        ),
        migrations.AddConstraint(
            model_name='wallettransfer',
            constraint=models.CheckConstraint(condition=models.Q(('needs_copy_back', True), ('state', 'failed'), _negated=True), name='transfer_failed_never_copied_back'),
        ),
    ]
