from django.apps import AppConfig


class MigrationConfig(AppConfig):
    """The migration from MongoDB to TigerBeetle: its jobs, records, admin pages and tasks."""

    name = "migration"
    label = "migration"
    verbose_name = "Reconciliation and migration records"
