"""`manage.py reconcile`: compare every wallet in both stores now and print the result."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from migration.runtime import process_runtime


class Command(BaseCommand):
    help = "Reconcile MongoDB, TigerBeetle and the registry; exit 1 on any mismatch."

    def handle(self, *args: Any, **options: Any) -> None:
        run = process_runtime().reconciliation().run(triggered_by=f"{getpass.getuser()} (command)")
        self.stdout.write(
            f"run {run.pk}: checked {run.checked}, matched {run.matched}, "
            f"mismatched {run.mismatched}, rows without account {run.rows_without_account}, "
            f"accounts without row {run.accounts_without_row}, "
            f"awaiting backfill {run.awaiting_backfill} in {run.duration_s:.2f} s"
        )
        if run.note:
            self.stdout.write(run.note)
        for mismatch in run.mismatches.all()[:20]:
            self.stdout.write(
                f"  {mismatch.kind} {mismatch.client_id} {mismatch.country} {mismatch.currency}"
                f" mongo=({mismatch.mongo_credit_minor}, {mismatch.mongo_debit_minor},"
                f" {mismatch.mongo_historical_credit_minor})"
                f" tb=({mismatch.tb_credit_minor}, {mismatch.tb_debit_minor},"
                f" {mismatch.tb_historical_credit_minor})"
            )
        if run.error:
            raise CommandError(f"reconciliation failed: {run.error}")
        if run.mismatched or run.rows_without_account or run.accounts_without_row:
            raise CommandError("mismatches found")
