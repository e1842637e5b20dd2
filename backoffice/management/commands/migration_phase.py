"""`manage.py migration_phase [PHASE] [--rollout P] [--shadow P] [--dual-write-share P]
[--override --reason R]`: show or change the phase. An override is taken as `--actor`, who
must be a user holding the override permission, and needs `--reason`.

Four eyes (FOUR_EYES_PHASE_CHANGES, `staff.phase_approvals`): a step that overrides its
criterion, or enters or leaves phase 4, is filed as a request and nothing changes;
`--approve N --actor OTHER --why W` (or `--reject N`) decides it as another user holding the
permission to change the phase. In an emergency with nobody to approve, `--break-glass --why W
--actor USER` takes such a step alone: kept as a break-glass request and on the audit row."""

from __future__ import annotations

import getpass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flags.models import FlagChange
from flags.phases import InvalidPhaseChange, Phase, current_state
from migration import tasks
from migration.phase_change import PhaseChangeReport, change_phase
from migration.phase_plan import Override, override_asked, plan_phase_change
from migration.runtime import process_runtime
from staff.four_eyes import ApprovalRefused
from staff.models import PhaseApproval
from staff.phase_approvals import (
    StepAsked,
    Stores,
    approve,
    break_glass,
    reject,
    request_step,
    why_four_eyes,
)


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
        "3 read cutover, 4 TigerBeetle only). Every change is audited. A step that overrides "
        "its criterion or enters or leaves phase 4 waits for another person's approval "
        "(--approve N)."
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
        decision = parser.add_mutually_exclusive_group()
        decision.add_argument(
            "--approve", type=int, metavar="N", help="approve phase change request N and take it"
        )
        decision.add_argument("--reject", type=int, metavar="N", help="reject request N")
        decision.add_argument(
            "--break-glass",
            action="store_true",
            help="an emergency with nobody to approve: take a four-eyes step alone (audited "
            "as break glass; --actor and --why needed)",
        )
        parser.add_argument(
            "--why", default="", help="with --approve, --reject or --break-glass: why, in writing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reason"] and not options["override"]:
            raise CommandError("--reason goes with --override (the step's note is --note)")
        deciding = options["approve"] or options["reject"]
        if deciding and options["phase"] is not None:
            raise CommandError("--approve and --reject take the requested step, not PHASE")
        if (deciding or options["break_glass"]) and not options["why"].strip():
            raise CommandError("--approve, --reject and --break-glass need --why")
        if deciding:
            self._decide(options)
        elif options["phase"] is not None:
            self._change(options)
        elif options["break_glass"]:
            raise CommandError("--break-glass goes with PHASE")
        self._show_state()

    def _change(self, options: dict[str, Any]) -> None:
        actor = options["actor"] or _login_name()
        asked = StepAsked(
            phase=Phase(options["phase"]),
            note=options["note"],
            rollout_percent=options["rollout"],
            shadow_percent=options["shadow"],
            dual_write_percent=options["dual_write_share"],
            override_reason=options["reason"] if options["override"] else "",
        )
        override = _override(options) if options["override"] else None
        plan = plan_phase_change(
            asked.phase,
            outbox=process_runtime().outbox,
            rollout_percent=asked.rollout_percent,
            shadow_percent=asked.shadow_percent,
            dual_write_percent=asked.dual_write_percent,
            override=override,
        )
        four_eyes = not plan.refusals and why_four_eyes(plan)
        # Break glass never lifts a refusal (the step is refused below as without it), and
        # is for a step that needs a second person only.
        if options["break_glass"] and not plan.refusals and not four_eyes:
            raise CommandError(
                "refused: --break-glass is for a step that needs a second person's "
                "approval; this one is taken without it"
            )
        try:
            if four_eyes and options["break_glass"]:
                user = _user(options["actor"])
                self._report(
                    break_glass(
                        asked, plan=plan, user=user, reason=options["why"], stores=_stores()
                    )
                )
            elif four_eyes:
                self._file(request_step(asked, plan=plan, requested_by=actor))
            else:
                self._report(
                    change_phase(
                        asked.phase,
                        actor=f"{actor} (command)",
                        mongo=process_runtime().mongo,
                        tigerbeetle=process_runtime().batches,
                        note=asked.note,
                        rollout_percent=asked.rollout_percent,
                        shadow_percent=asked.shadow_percent,
                        dual_write_percent=asked.dual_write_percent,
                        override=override,
                        on_share_raised=tasks.queue_share_intake,
                    )
                )
        except (InvalidPhaseChange, ApprovalRefused) as exc:
            raise CommandError(f"refused: {exc}") from exc

    def _file(self, approval: PhaseApproval) -> None:
        self.stdout.write(
            f"request {approval.pk} filed: phase {approval.from_phase} -> "
            f"{approval.to_phase} waits for another person's approval because "
            f"{approval.why_four_eyes} (expires {approval.expires_at:%Y-%m-%d %H:%M} "
            f"UTC): manage.py migration_phase --approve {approval.pk} --actor OTHER "
            "--why ..., or Phase approvals in the admin"
        )

    def _decide(self, options: dict[str, Any]) -> None:
        pk = options["approve"] or options["reject"]
        approval = PhaseApproval.objects.filter(pk=pk).first()
        if approval is None:
            raise CommandError(f"there is no phase change request {pk}")
        user = _user(options["actor"])
        try:
            if options["reject"]:
                reject(approval, rejecter=user, reason=options["why"])
                self.stdout.write(f"request {pk} rejected: the phase is unchanged")
                return
            report = approve(approval, approver=user, reason=options["why"], stores=_stores())
        except (InvalidPhaseChange, ApprovalRefused) as exc:
            raise CommandError(f"refused: {exc}") from exc
        self.stdout.write(f"request {pk} approved by {user.get_username() if user else ''}")
        self._report(report)

    def _report(self, report: PhaseChangeReport) -> None:
        self.stdout.write(
            f"phase {int(report.before)} -> {int(report.after)}"
            f" (mirrored {report.mirrored}, copied back {report.copied_back}"
            f"{_before_the_pause(report)}){_compared_before_the_pause(report)}{_paused(report)}"
        )
        if report.share_raised:
            self.stdout.write(
                f"dual-write share raised: {report.released} outbox entries released to "
                "the mirror; backfill and sweep queued"
            )

    def _show_state(self) -> None:
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


def _stores() -> Stores:
    runtime = process_runtime()
    return Stores(
        mongo=runtime.mongo, tigerbeetle=runtime.batches, on_share_raised=tasks.queue_share_intake
    )


def _user(name: str) -> Any:
    """The user `--actor` names: deciding and breaking glass are done as a real user."""
    if not name:
        raise CommandError("--actor USER is needed: the user who decides")
    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise CommandError(f"there is no user {name!r}")
    return user


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


def _before_the_pause(report: PhaseChangeReport) -> str:
    """How much of the copy back went before the pause, when any did."""
    if not report.copied_back_before_pause:
        return ""
    return f", {report.copied_back_before_pause} of them before the pause"


def _compared_before_the_pause(report: PhaseChangeReport) -> str:
    """How many changed wallets phase 4's entry compared before its pause, when any."""
    if not report.compared_before_pause:
        return ""
    return f"; {report.compared_before_pause} changed wallets compared before the pause"


def _paused(report: PhaseChangeReport) -> str:
    """How long writes were paused, for a step that paused them, and where the time went."""
    if not report.paused_s:
        return ""
    parts = ", ".join(
        f"{_part_name(report, part)} {seconds:.2f} s"
        for part, seconds in report.pause_parts_s.items()
    )
    return f"; writes paused {report.paused_s:.2f} s" + (f" ({parts})" if parts else "")


def _part_name(report: PhaseChangeReport, part: str) -> str:
    """A part of the pause as the operator reads it, with how much it did."""
    if part == "wallets compared":
        return f"{report.compared_in_pause} wallets compared"
    if part == "copied back":
        return f"{report.copied_back - report.copied_back_before_pause} copied back"
    return part
