"""`manage.py migration_phase [PHASE] [--rollout P] [--shadow P] [--dual-write-share P]
[--override --reason R]`: show
or change the phase. An override is taken as `--actor`, who must be a user holding the
override permission, and needs `--reason`."""

from __future__ import annotations

import getpass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flags.models import FlagChange
from flags.phases import InvalidPhaseChange, Phase, current_state
from migration import tasks
from migration.phase_change import change_phase
from migration.phase_plan import Override, override_asked
from migration.runtime import process_runtime


def _percent(value: str) -> Decimal:
    try:
        percent = Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"{value!r} is not a percentage") from exc
    if not Decimal(0) <= percent <= Decimal(100):
        raise CommandError(f"{value} is not between 0 and 100")
    return percent


class Command(BaseCommand):
    help = (
        "Show the migration phase, or move to PHASE (0 legacy, 1 dual write, 2 shadow read, "
        "3 read cutover, 4 TigerBeetle only). Every change is audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("phase", nargs="?", type=int, choices=[p.value for p in Phase])
        parser.add_argument("--rollout", type=_percent, help="phase 3: percent of clients on TB")
        parser.add_argument("--shadow", type=_percent, help="phase 2: percent of reads compared")
        parser.add_argument(
            "--dual-write-share",
            type=_percent,
            help="percent of clients dual-written (raised one step at a time in phases 1-3)",
        )
        parser.add_argument("--actor", default="", help="who is changing it (default: $USER)")
        parser.add_argument("--note", default="", help="why, for the audit trail")
        parser.add_argument(
            "--override",
            action="store_true",
            help="take a forward step whose criterion has not held (only that refusal); "
            "--actor must hold the override permission",
        )
        parser.add_argument("--reason", default="", help="with --override: why, in writing")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reason"] and not options["override"]:
            raise CommandError("--reason goes with --override (the step's note is --note)")
        if options["phase"] is not None:
            actor = options["actor"] or _login_name()
            try:
                report = change_phase(
                    Phase(options["phase"]),
                    actor=f"{actor} (command)",
                    mongo=process_runtime().mongo,
                    tigerbeetle=process_runtime().batches,
                    note=options["note"],
                    rollout_percent=options["rollout"],
                    shadow_percent=options["shadow"],
                    dual_write_percent=options["dual_write_share"],
                    override=_override(options) if options["override"] else None,
                    on_share_raised=tasks.queue_share_intake,
                )
            except InvalidPhaseChange as exc:
                raise CommandError(f"refused: {exc}") from exc
            self.stdout.write(
                f"phase {int(report.before)} -> {int(report.after)}"
                f" (mirrored {report.mirrored}, copied back {report.copied_back})"
            )
            if report.share_raised:
                self.stdout.write(
                    f"dual-write share raised: {report.released} outbox entries released to "
                    "the mirror; backfill and sweep queued"
                )
        state = current_state()
        self.stdout.write(
            f"phase {int(state.phase)} {state.phase.name.lower()}: "
            f"dual_write={'on' if state.dual_write else 'off'} "
            f"dual_write_share={state.dual_write_percent}% "
            f"shadow={state.shadow_read_percent}% "
            f"read_cutover={'on' if state.read_cutover else 'off'} "
            f"rollout={state.read_rollout_percent}% "
            f"tigerbeetle_only={'on' if state.tigerbeetle_only else 'off'}"
        )
        for change in FlagChange.objects.all()[:5]:
            self.stdout.write(f"  {change.changed_at:%Y-%m-%d %H:%M:%S} {change}")


def _override(options: dict[str, Any]) -> Override:
    """The override asked for, as the user `--actor` names (none: no one who may)."""
    name = options["actor"]
    user = get_user_model().objects.filter(username=name).first() if name else None
    override = override_asked(user, reason=options["reason"])
    return override if user is not None else Override(name, permitted=False, reason=override.reason)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
