"""`manage.py backfill`: import every legacy MongoDB wallet into TigerBeetle (resumable)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from migration.backfill import PAGE_SIZE
from migration.runtime import process_runtime


class Command(BaseCommand):
    help = "Import legacy wallets with their opening balances; safe to re-run after a crash."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["page_size"] <= 8189:
            raise CommandError("--page-size must be between 1 and 8189")
        progress = False if options["no_progress"] else None
        report = process_runtime().backfill().run(page_size=options["page_size"], progress=progress)
        self.stdout.write(
            f"scanned {report.scanned}, imported {report.imported}, "
            f"already imported {report.already_imported}, born with the log {report.log_complete}, "
            f"open holds carried {report.holds_carried}, "
            f"inconsistent {report.inconsistent}, failed {len(report.failed)}, "
            f"outside the dual-write share {report.outside_share} "
            f"in {report.duration_s:.1f} s"
        )
        for failure in report.failed[:20]:
            self.stderr.write(f"  failed: {failure}")
        if report.failed:
            raise CommandError("some wallets were not imported; fix them and run again")
