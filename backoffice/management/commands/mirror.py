"""`manage.py mirror`: the outbox's state; drain it now; requeue parked entries."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from migration.mirror import Mirror
from wallet_site.wiring import mongo_outbox, tigerbeetle_batches


class Command(BaseCommand):
    help = "Show the mirror outbox; --drain applies what is pending; --requeue-parked retries."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drain", action="store_true")
        parser.add_argument("--requeue-parked", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        outbox = mongo_outbox()
        if options["requeue_parked"]:
            self.stdout.write(f"requeued {outbox.requeue_parked()} parked entries")
        if options["drain"]:
            report = Mirror(outbox, tigerbeetle_batches()).drain()
            self.stdout.write(
                f"applied {report.applied}, already applied {report.already_applied}, "
                f"covered {report.covered}, awaiting backfill {report.waiting_for_backfill}, "
                f"parked {report.parked}, failed {report.failed_transiently}"
            )
        depth = outbox.depth()
        self.stdout.write(
            f"outbox: {depth.pending} pending, {depth.parked} parked, "
            f"{depth.awaiting_backfill} awaiting backfill; "
            f"oldest pending {depth.oldest_pending_age_s} s old"
        )
        for entry in outbox.parked(limit=20):
            self.stdout.write(f"  parked {entry.entry_id}: {entry.mirror_error}")
