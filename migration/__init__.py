"""The migration from MongoDB to TigerBeetle, as a Django app of its own: the phased store,
the mirror, shadow reads, backfill, reconciliation, phase changes, their Celery tasks, the
dashboard's figures and charts, the admin pages, the records they keep and the management
commands (docs/migration.md is the runbook)."""
