from django.apps import AppConfig


class MigrationConfig(AppConfig):
    """The migration from MongoDB to TigerBeetle: its jobs, records, routing and tasks; and the
    process's runtime (`migration.runtime`), which the project's wiring installs here."""

    name = "migration"
    label = "migration"
    verbose_name = "Migration"
    # The process runtime (a migration.runtime.Runtime), installed by the wiring at start-up;
    # typed there, where it is read.
    runtime: object = None
