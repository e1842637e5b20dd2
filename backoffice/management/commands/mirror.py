"""`manage.py mirror`: the outbox's state; drain it now; requeue parked entries."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from migration.runtime import process_runtime


class Command(BaseCommand):
    help = "Show the mirror outbox; --drain applies what is pending; --requeue-parked retries."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drain", action="store_true")
        parser.add_argument("--requeue-parked", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        runtime = process_runtime()
        if options["requeue_parked"]:
            self.stdout.write(f"requeued {runtime.outbox.requeue_parked()} parked entries")
        if options["drain"]:
            report = runtime.mirror().drain()
            self.stdout.write(
                f"applied {report.applied}, already applied {report.already_applied}, "
                f"covered {report.covered}, awaiting backfill {report.waiting_for_backfill}, "
                f"parked {report.parked}, failed {report.failed_transiently}"
            )
        depth = runtime.outbox.depth()
        self.stdout.write(
            f"outbox: {depth.pending} pending, {depth.parked} parked, "
            f"{depth.awaiting_backfill} awaiting backfill, "
            f"{depth.outside_share} set aside outside the dual-write share; "
            f"oldest pending {depth.oldest_pending_age_s} s old"
        )
        for entry in runtime.outbox.parked(limit=20):
            self.stdout.write(f"  parked {entry.entry_id}: {entry.mirror_error}")
