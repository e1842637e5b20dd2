"""Changing the migration phase safely: the one way the product team moves between phases.

A change first builds the step's plan (`migration.phase_plan`, which the phase page
previews) and is refused with its refusals before anything starts. Most changes are just
flags (`flags.audit.apply_state`): every process reads the flags from the database on each
operation, so it follows them from its next operation on. The two that
move where money is written pause writes (`wallet_writes_paused`: writes answer 503
writes_paused, which clients retry) and hold the write lock (`flags.write_lock`) exclusively,
which waits until every write that read the old phase has finished; then:

- entering phase 4 (TigerBeetle only) requires the backfill milestone and, before the pause,
  a recent clean reconciliation run of every wallet (`migration.entry_check`); in the pause
  it drains the mirror and compares against TigerBeetle every MongoDB wallet changed since
  that run (every wallet, where there are few); it is refused, and writes resume on
  MongoDB, if anything is left in the outbox or any wallet is missing or differs;
- leaving phase 4 copies every write TigerBeetle took as the only store back into MongoDB
  (in TigerBeetle's timestamp order, marked as already mirrored: `migration.copy_back`), so
  MongoDB is complete again before it takes writes: on PostgreSQL most of it before the
  pause, in passes while phase 4 still takes writes, each up to a point of TigerBeetle's
  order no write in flight can still precede (the movement fence); in the pause, what the
  last pass left.

A change of the dual-write share (or dual write starting) holds the share fence exclusively
(`flags.write_lock.mirror_runs_drained`: no mirror run in flight) while it releases the
outbox entries of the clients it takes in (set aside while they were outside) and commits
the share; a raise then calls `on_share_raised` (the caller queues the backfill of their
legacy wallets and a sweep). Writes are not paused: every write is in the outbox whatever
share it read, and the mirror decides per run under the fence (`migration.mirror`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from flags.audit import (
    apply_state,
    record_guard_figures,
    record_step_criterion,
    recording_phase_change,
    set_writes_paused,
)
from flags.models import Milestone
from flags.phases import InvalidPhaseChange, Phase, current_state, share_bucket_limit
from flags.write_lock import (
    MirrorRunsStillRunning,
    WritesStillRunning,
    mirror_runs_drained,
    writes_drained,
)
from ledger.batches import LedgerBatches
from ledger.stores.mongo_store import MongoWalletStore
from migration.copy_back import copy_back_before_the_pause, copy_back_tigerbeetle_writes
from migration.entry_check import EntryBasis, catch_up, check_in_pause, entry_basis
from migration.mirror import Mirror
from migration.models import ReconciliationRun
from migration.outbox import MirrorOutbox, MirrorState
from migration.phase_plan import Override, StepPlan, plan_phase_change

log = logging.getLogger(__name__)


@dataclass
class PhaseChangeReport:
    before: Phase
    after: Phase
    mirrored: int = 0
    copied_back: int = 0
    # Of those, copied before the pause while phase 4 still took writes (migration.copy_back).
    copied_back_before_pause: int = 0
    # Phase 4's entry: changed wallets compared before the pause (migration.entry_check).
    compared_before_pause: int = 0
    # How long writes were paused (a step that moves where money is written), wall clock,
    # and where that time went, part by part in order (`PauseParts`).
    paused_s: float = 0.0
    pause_parts_s: dict[str, float] = field(default_factory=dict)
    # Phase 4's entry: wallets compared inside the pause.
    compared_in_pause: int = 0
    # Outbox entries of clients a raise of the dual-write share took in, sent to the mirror.
    released: int = 0
    share_raised: bool = False
    notes: list[str] = field(default_factory=list)


class PauseParts:
    """The pause's wall time split at each `lap` into the part just done: an operator whose
    pause ran long sees whether it waited for writes in flight, the mirror, or the
    comparison, and the moonshot says what limits the writes paused."""

    def __init__(self, parts_s: dict[str, float]) -> None:
        self.parts_s = parts_s
        self._since = time.monotonic()

    def lap(self, part: str) -> None:
        now = time.monotonic()
        self.parts_s[part] = self.parts_s.get(part, 0.0) + now - self._since
        self._since = now


def change_phase(
    phase: Phase,
    actor: str,
    mongo: MongoWalletStore,
    tigerbeetle: LedgerBatches,
    *,
    note: str = "",
    rollout_percent: Decimal | None = None,
    shadow_percent: Decimal | None = None,
    dual_write_percent: Decimal | None = None,
    override: Override | None = None,
    guard_figures: dict[str, Any] | None = None,
    on_share_raised: Callable[[], None] | None = None,
    approved_by: str = "",
) -> PhaseChangeReport:
    """Move to `phase` (audited as `actor`), or raise InvalidPhaseChange saying why not: the
    plan's refusals before anything starts, or what executing the step found. Every change
    asked for is one audit row (`flags.PhaseChange`), refused or not, with the criterion the
    step waited for and any override; a step the guard takes (`migration.guard`) keeps the
    figures that made it take it (`guard_figures`). `on_share_raised` runs after a raise of
    the dual-write share took effect (the back-office queues the backfill and a sweep).
    `approved_by`: the second person who approved it (four eyes, `staff.phase_approvals`),
    kept on the audit row."""
    with recording_phase_change(
        actor,
        note=note,
        from_phase=int(current_state().phase),
        to_phase=int(phase),
        approved_by=approved_by,
    ) as record:
        plan = plan_phase_change(
            phase,
            outbox=MirrorOutbox(mongo.database),
            rollout_percent=rollout_percent,
            shadow_percent=shadow_percent,
            dual_write_percent=dual_write_percent,
            override=override,
        )
        record_step_criterion(
            record,
            criterion=plan.criterion_figures(),
            overridden=plan.overridden,
            override_reason=plan.override_reason,
        )
        if guard_figures:
            record_guard_figures(record, guard_figures)
        if plan.refusals:
            raise InvalidPhaseChange(plan.refusal_message())
        report = _take_step(plan, actor, mongo, tigerbeetle, note=note)
    if plan.raises_dual_write_share:
        report.share_raised = True
        if on_share_raised is not None:
            on_share_raised()
    return report


def _changes_mirrored_clients(plan: StepPlan) -> bool:
    """Whether the step changes which clients the mirror takes: the share moves, or dual
    write starts (entries set aside under an earlier, narrower share, then dual write
    stopped and the share set wider in phase 0, are taken in too)."""
    starts_dual_write = plan.after.mirrors_to_tigerbeetle and not plan.before.dual_write
    return plan.changes_dual_write_share or starts_dual_write


def _apply_with_share(
    plan: StepPlan, mongo: MongoWalletStore, report: PhaseChangeReport, *, actor: str, note: str
) -> None:
    """The flags of a step that changes which clients are mirrored, while no mirror run is
    in flight (the share fence, exclusively): first the outbox entries of the clients it
    takes in go back to the mirror, then the share is committed. A run that starts later
    sees both; one that ran before saw neither. So no run applies a wallet's later entry
    while an earlier one is still set aside, and none sets aside an entry of a client the
    new share takes in."""
    try:
        with mirror_runs_drained(settings.PHASE_CHANGE_WRITES_WAIT_S):
            if plan.after.mirrors_to_tigerbeetle:
                limit = share_bucket_limit(plan.after.dual_write_percent)
                report.released = MirrorOutbox(mongo.database).release_outside_share(
                    bucket_limit=limit
                )
            apply_state(plan.after, actor=actor, note=note)
    except MirrorRunsStillRunning as exc:
        raise InvalidPhaseChange(f"{exc}; the dual-write share is unchanged, try again") from exc
    log.info(
        "dual-write share %s%% -> %s%%: %d outbox entries released to the mirror",
        plan.before.dual_write_percent,
        plan.after.dual_write_percent,
        report.released,
    )


def _take_step(
    plan: StepPlan, actor: str, mongo: MongoWalletStore, tigerbeetle: LedgerBatches, *, note: str
) -> PhaseChangeReport:
    """The step nothing refused before it started: the flags, or (moving where money is
    written) the pause, the drain and reconciliation or the copy back, then the flags."""
    phase = plan.phase
    report = PhaseChangeReport(before=plan.before.phase, after=phase)
    entering_tb_only = plan.enters_tigerbeetle_only
    if not plan.pauses_writes:
        if _changes_mirrored_clients(plan):
            _apply_with_share(plan, mongo, report, actor=actor, note=note)
        else:
            apply_state(plan.after, actor=actor, note=note)
        return report
    # Before the pause: the reconciliation run the pause builds on, or the refusal; or the
    # bulk of the copy back, so the pause copies only what the last pass left.
    basis = entry_basis(mongo.database) if entering_tb_only else None
    if basis is not None:
        basis, report.compared_before_pause = catch_up(mongo, tigerbeetle, basis, actor=actor)
    if plan.leaves_tigerbeetle_only:
        report.copied_back_before_pause = copy_back_before_the_pause(mongo, tigerbeetle)
    set_writes_paused(True, actor=actor, note=f"moving to phase {int(phase)}")
    paused_at = time.monotonic()
    parts = PauseParts(report.pause_parts_s)
    try:
        with writes_drained(settings.PHASE_CHANGE_WRITES_WAIT_S):
            # No write that read the old phase is running now, and none can start: what
            # follows sees every write the old phase acknowledged.
            parts.lap("writes in flight")
            if basis is not None:
                _drain_or_refuse(mongo, tigerbeetle, report)
                parts.lap("mirror drained")
                report.compared_in_pause = _reconcile_or_refuse(
                    mongo, tigerbeetle, actor, basis
                ).checked
                parts.lap("wallets compared")
            else:
                report.copied_back = report.copied_back_before_pause
                report.copied_back += copy_back_tigerbeetle_writes(mongo, tigerbeetle)
                parts.lap("copied back")
            apply_state(plan.after, actor=actor, note=note)
            if entering_tb_only:
                Milestone.objects.update_or_create(
                    name=Milestone.ENTERED_TIGERBEETLE_ONLY,
                    defaults={"reached_at": timezone.now(), "detail": {"actor": actor}},
                )
            parts.lap("flags")
    except WritesStillRunning as exc:
        raise InvalidPhaseChange(
            f"{exc}; the phase is unchanged and writes resume, try again"
        ) from exc
    finally:
        set_writes_paused(False, actor=actor, note=f"phase {int(phase)} change finished")
        report.paused_s = time.monotonic() - paused_at
        log.info("phase %d -> %d: writes paused %.2f s", plan.before.phase, phase, report.paused_s)
    return report


def _drain_or_refuse(
    mongo: MongoWalletStore, tigerbeetle: LedgerBatches, report: PhaseChangeReport
) -> None:
    outbox = MirrorOutbox(mongo.database)
    # Phase 4 needs the share at 100 %: nothing is outside it any longer.
    outbox.release_outside_share(bucket_limit=share_bucket_limit(Decimal(100)))
    drained = Mirror(outbox, tigerbeetle).drain()
    report.mirrored = drained.applied + drained.already_applied
    depth = outbox.depth()
    waiting = {**depth.waiting(), MirrorState.OUTSIDE_SHARE: depth.outside_share}
    if any(waiting.values()):
        raise InvalidPhaseChange(
            "the mirror is not drained, so TigerBeetle lacks MongoDB writes "
            f"({', '.join(f'{count} {state}' for state, count in waiting.items() if count)}); "
            "fix the parked entries (or run the backfill) and try again"
        )


def _reconcile_or_refuse(
    mongo: MongoWalletStore, tigerbeetle: LedgerBatches, actor: str, basis: EntryBasis
) -> ReconciliationRun:
    """An empty outbox is not proof: a wallet whose write never reached the log would be
    lost. Compare with TigerBeetle every MongoDB wallet changed since the clean full
    reconciliation run `basis` names, or every wallet (`migration.entry_check`)."""
    return check_in_pause(mongo, tigerbeetle, basis, actor=actor)
