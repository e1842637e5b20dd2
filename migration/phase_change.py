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
  (in TigerBeetle's timestamp order, marked as already mirrored), so MongoDB is complete
  again before it takes writes.

A change of the dual-write share (or dual write starting) holds the share fence exclusively
(`flags.write_lock.mirror_runs_drained`: no mirror run in flight) while it releases the
outbox entries of the clients it takes in (set aside while they were outside) and commits
the share; a raise then calls `on_share_raised` (the caller queues the backfill of their
legacy wallets and a sweep). Writes are not paused: every write is in the outbox whatever
share it read, and the mirror decides per run under the fence (`migration.mirror`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from domain import errors
from domain.ids import hex_to_u128
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
from ledger import history
from ledger.batches import LedgerBatches
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_holds import hold_of_row
from migration.entry_check import EntryBasis, check_in_pause, entry_basis
from migration.mirror import Mirror
from migration.outbox import MirrorOutbox, MirrorState
from migration.phase_plan import Override, StepPlan, plan_phase_change
from registry import holds as hold_registry
from registry import transfers as transfer_registry
from registry.models import WalletHold, WalletTransfer

log = logging.getLogger(__name__)
# Registry rows read per query while copying phase-4 writes back (writes and voids each).
COPY_BACK_PAGE_ROWS = 1000
# Rounds of one copy-back: each copies at least one event, so this bounds the rows too.
COPY_BACK_ROUNDS_MAX = 1_000_000
TB_TIMESTAMP_MAX = 2**64 - 1
NS_PER_MS = 1_000_000
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class PhaseChangeReport:
    before: Phase
    after: Phase
    mirrored: int = 0
    copied_back: int = 0
    # Outbox entries of clients a raise of the dual-write share took in, sent to the mirror.
    released: int = 0
    share_raised: bool = False
    notes: list[str] = field(default_factory=list)


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
    # Before the pause: the reconciliation run the pause builds on, or the refusal.
    basis = entry_basis(mongo.database) if entering_tb_only else None
    set_writes_paused(True, actor=actor, note=f"moving to phase {int(phase)}")
    try:
        with writes_drained(settings.PHASE_CHANGE_WRITES_WAIT_S):
            # No write that read the old phase is running now, and none can start: what
            # follows sees every write the old phase acknowledged.
            if basis is not None:
                _drain_or_refuse(mongo, tigerbeetle, report)
                _reconcile_or_refuse(mongo, tigerbeetle, actor, basis)
            else:
                report.copied_back = copy_back_tigerbeetle_writes(mongo, tigerbeetle)
            apply_state(plan.after, actor=actor, note=note)
            if entering_tb_only:
                Milestone.objects.update_or_create(
                    name=Milestone.ENTERED_TIGERBEETLE_ONLY,
                    defaults={"reached_at": timezone.now(), "detail": {"actor": actor}},
                )
    except WritesStillRunning as exc:
        raise InvalidPhaseChange(
            f"{exc}; the phase is unchanged and writes resume, try again"
        ) from exc
    finally:
        set_writes_paused(False, actor=actor, note=f"phase {int(phase)} change finished")
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
) -> None:
    """An empty outbox is not proof: a wallet whose write never reached the log would be
    lost. Compare with TigerBeetle every MongoDB wallet changed since the clean full
    reconciliation run `basis` names, or every wallet (`migration.entry_check`)."""
    check_in_pause(mongo, tigerbeetle, basis, actor=actor)


def copy_back_due() -> bool:
    """Whether TigerBeetle holds writes MongoDB has not been given yet."""
    return (
        WalletTransfer.objects.filter(
            Q(needs_copy_back=True) | Q(void_needs_copy_back=True)
        ).exists()
        or WalletHold.objects.filter(
            Q(needs_copy_back=True) | Q(place_needs_copy_back=True)
        ).exists()
    )


def copy_back_tigerbeetle_writes(
    mongo: MongoWalletStore,
    tigerbeetle: LedgerBatches,
    *,
    page_rows: int = COPY_BACK_PAGE_ROWS,
) -> int:
    """Copy phase-4 writes (credits, debits, voids) and hold events (placed, captured,
    released) into MongoDB in TigerBeetle's order; the expiries among them are MongoDB's own
    (each copied event first expires the holds due by its time), and the sweep at the end
    expires the holds due since the last one. Then what rows from before the hold events
    were flagged leave: captures and releases of holds MongoDB holds open, holds still open.

    Idempotent: MongoDB answers a replay for an id it already has, and each row is marked
    done as soon as its copy committed, so an interrupted copy-back resumes where it stopped.
    Read in bounded rounds (`_next_copy_back_round`), each copying the events no unread row
    can precede, so the whole run keeps TigerBeetle's timestamp order.
    """
    assert page_rows > 0
    copied = 0
    for _ in range(COPY_BACK_ROUNDS_MAX):
        events = _next_copy_back_round(tigerbeetle, page_rows=page_rows)
        if not events:
            break
        for _, what, row in events:
            _copy_back(mongo, what, row)
        copied += len(events)
    else:
        raise InvalidPhaseChange(
            f"copying back did not finish in {COPY_BACK_ROUNDS_MAX} rounds; try again"
        )
    copied += _copy_back_captured_holds(mongo, page_rows=page_rows)
    copied += _copy_back_released_holds(mongo)
    copied += _copy_back_open_holds(mongo, page_rows=page_rows)
    if copied:
        mongo.sweep_expired_holds()
    log.info("copied %d TigerBeetle-only writes back to MongoDB", copied)
    return copied


def _copy_back_captured_holds(mongo: MongoWalletStore, *, page_rows: int) -> int:
    """Holds TigerBeetle captured alone that the rounds left (none: they copy every flagged
    capture in order), after every other write: a capture only lowers a wallet's available
    credit, so no copied write before it can be refused for it (docs/holds.md)."""
    copied = 0
    for _ in range(COPY_BACK_ROUNDS_MAX):
        rows = list(
            WalletHold.objects.select_related("wallet")
            .filter(needs_copy_back=True)
            .order_by("tb_timestamp", "pk")[:page_rows]
        )
        if not rows:
            return copied
        for row in rows:
            mongo.copy_back_capture(hold_of_row(row))
            hold_registry.mark_capture_copied_back(hold_pk=row.pk)
        copied += len(rows)
    raise InvalidPhaseChange(
        f"copying back holds did not finish in {COPY_BACK_ROUNDS_MAX} rounds; try again"
    )


def _copy_back_released_holds(mongo: MongoWalletStore) -> int:
    """Mirrored holds (placed in phases 1-3) that MongoDB holds open and TigerBeetle released
    in phase 4: released in MongoDB too, so neither store holds money the other freed. (One
    that expired there expires in MongoDB no later: the cluster's timeout was what was left
    of MongoDB's expiry, docs/holds.md.)"""
    open_ids = mongo.open_hold_ids()
    copied = 0
    for start in range(0, len(open_ids), COPY_BACK_PAGE_ROWS):
        rows = WalletHold.objects.select_related("wallet").filter(
            hold_id__in=open_ids[start : start + COPY_BACK_PAGE_ROWS],
            state=WalletHold.State.RELEASED,
        )
        copied += sum(mongo.copy_back_resolution(hold_of_row(row)) for row in rows)
    return copied


def _copy_back_open_holds(mongo: MongoWalletStore, *, page_rows: int) -> int:
    """Holds TigerBeetle holds open that MongoDB lacks (placed in phase 4): copied as open,
    mirrored holds with the cluster's expiry, so phases 1-3 capture or release them (an
    ordinary post or void of the pending transfer, migration/hold_mirror.py) and phase 4
    again too. After every other write: a hold only lowers the available credit."""
    copied, after_pk = 0, 0
    for _ in range(COPY_BACK_ROUNDS_MAX):
        rows = list(
            WalletHold.objects.select_related("wallet")
            .filter(state=WalletHold.State.OPEN, expires_at__gt=timezone.now(), pk__gt=after_pk)
            .order_by("pk")[:page_rows]
        )
        if not rows:
            return copied
        known = mongo.known_hold_ids([row.hold_id for row in rows])  # one read a page
        copied += sum(
            mongo.copy_back_open(hold_of_row(row)) for row in rows if row.hold_id not in known
        )
        after_pk = rows[-1].pk
    raise InvalidPhaseChange(
        f"copying back holds did not finish in {COPY_BACK_ROUNDS_MAX} rounds; try again"
    )


CopyBackRow = WalletTransfer | WalletHold
CopyBackEvent = tuple[int, str, CopyBackRow]


def _next_copy_back_round(tigerbeetle: LedgerBatches, *, page_rows: int) -> list[CopyBackEvent]:
    """The next events to copy back, in TigerBeetle's timestamp order, at most about four
    pages of rows: writes, voids, holds TigerBeetle placed alone and the captures and
    releases it took alone.

    Writes and placements are read by their TigerBeetle timestamp. A void's or a hold
    resolution's timestamp lives in TigerBeetle only; the registry holds it to the
    millisecond (`voided_at`, `resolved_at`), so those are read by that time and their page
    is completed with the rest of its last millisecond. An event is copied in this round
    only when no row left unread can come before it: up to the last write or placement read
    (when its page was full) and up to the end of the last millisecond read of the others
    (when their page was full). Rows copied drop out of their queries, so every round makes
    progress and the next one starts where this one stopped. (An expiry is no event here:
    MongoDB expires a copied hold itself, before the first copied event past its expiry.)
    """
    transfers = WalletTransfer.objects.select_related("wallet")
    holds = WalletHold.objects.select_related("wallet")
    by_timestamp = F("tb_timestamp").asc(nulls_first=True)
    writes = list(transfers.filter(needs_copy_back=True).order_by(by_timestamp, "pk")[:page_rows])
    placed = list(holds.filter(place_needs_copy_back=True).order_by(by_timestamp, "pk")[:page_rows])
    horizon = TB_TIMESTAMP_MAX
    for page in (writes, placed):
        if len(page) == page_rows:
            horizon = min(horizon, page[-1].tb_timestamp or 0)
    voids, void_horizon = _page_by_millisecond(
        transfers.filter(void_needs_copy_back=True), field="voided_at", page_rows=page_rows
    )
    resolved, resolved_horizon = _page_by_millisecond(
        holds.filter(needs_copy_back=True), field="resolved_at", page_rows=page_rows
    )
    horizon = min(horizon, void_horizon, resolved_horizon)
    later_ids = [hex_to_u128(row.void_tb_transfer_id_hex) for row in voids]
    later_ids += [hex_to_u128(row.resolution_tb_transfer_id_hex) for row in resolved]
    times = history.transfer_timestamps(tigerbeetle, later_ids)
    events: list[CopyBackEvent] = [(row.tb_timestamp or 0, "write", row) for row in writes]
    events += [(row.tb_timestamp or 0, "place", row) for row in placed]
    for row in voids:
        void_time = times.get(hex_to_u128(row.void_tb_transfer_id_hex), 0)
        assert (
            not void_time
            or row.voided_at is None
            or (void_time // NS_PER_MS == _epoch_ms(row.voided_at))
        ), f"void of {row.transaction_id!r}: voided_at is not TigerBeetle's time"
        events.append((void_time, "void", row))
    for hold in resolved:
        events.append(
            (times.get(hex_to_u128(hold.resolution_tb_transfer_id_hex), 0), "resolve", hold)
        )
    events.sort(key=lambda event: event[0])
    return [event for event in events if event[0] <= horizon]


def _page_by_millisecond(rows: Any, *, field: str, page_rows: int) -> tuple[list[Any], int]:
    """A page of `rows` by their millisecond `field`, completed with the rest of its last
    millisecond, and the horizon it sets (the end of that millisecond when the page was
    full, else none)."""
    page = list(rows.order_by(F(field).asc(nulls_first=True), "pk")[:page_rows])
    last_ms = getattr(page[-1], field) if page else None
    if len(page) < page_rows or last_ms is None:
        return page, TB_TIMESTAMP_MAX
    page += rows.filter(**{field: last_ms, "pk__gt": page[-1].pk}).order_by("pk")
    return page, (_epoch_ms(last_ms) + 1) * NS_PER_MS - 1


def _epoch_ms(moment: datetime) -> int:
    return (moment - UNIX_EPOCH) // timedelta(milliseconds=1)


def _copy_back(mongo: MongoWalletStore, what: str, row: CopyBackRow) -> None:
    """One event into MongoDB (as already mirrored), then marked done in the registry."""
    if isinstance(row, WalletHold):
        _copy_back_hold_event(mongo, what, row)
        return
    key = row.wallet.key
    try:
        if what == "void":
            with contextlib.suppress(errors.AlreadyVoided):  # copied by an earlier run
                mongo.void_transaction(
                    row.transaction_id,
                    voided_by=row.voided_by,
                    reason=row.void_reason,
                    mirror=False,
                    voided_at=row.voided_at,
                )
            transfer_registry.mark_void_copied_back(transfer_pk=row.pk)
        else:
            credit = row.kind == WalletTransfer.Kind.CREDIT
            write = mongo.add_credit if credit else mongo.subtract_credit
            write(
                key,
                row.amount_minor,
                row.transaction_id,
                mirror=False,
                created_at=row.created_at,
                made_by=row.made_by,
            )
    except errors.WalletError as exc:
        raise InvalidPhaseChange(
            f"copying {row.kind} {row.transaction_id!r} back to MongoDB failed: {exc.message}"
            " - TigerBeetle stays the only store; reconcile the wallet and try again"
        ) from exc
    if what == "write":
        transfer_registry.mark_write_copied_back(transfer_pk=row.pk)


def _copy_back_hold_event(mongo: MongoWalletStore, what: str, row: WalletHold) -> None:
    """A hold TigerBeetle placed alone, or its capture or release, into MongoDB at its place
    among the copied writes (so MongoDB's history of it is TigerBeetle's: docs/holds.md),
    then marked done in the registry."""
    hold = hold_of_row(row)
    try:
        if what == "place":
            mongo.copy_back_placement(hold)
            hold_registry.mark_placement_copied_back(hold_pk=row.pk)
            return
        if row.state == WalletHold.State.CAPTURED:
            mongo.copy_back_capture(hold)
        else:
            mongo.copy_back_resolution(hold)
    except errors.WalletError as exc:
        raise InvalidPhaseChange(
            f"copying hold {row.hold_id!r} back to MongoDB failed: {exc.message}"
            " - TigerBeetle stays the only store; reconcile the wallet and try again"
        ) from exc
    hold_registry.mark_capture_copied_back(hold_pk=row.pk)
