"""The plan of a phase step: the one home of the rules for moving between phases.

A step's plan says what the step will do (its effects, in the words the phase page shows),
whether it moves where money is written (a confirmation first; writes paused while the store
written changes), what refuses it before anything starts, and the criterion it waits for.
`plan_step` is a pure function of the step and the facts `gather_step_facts` reads once, so
the rules are tested without a database. The phase page previews the plan and
`migration.phase_change.change_phase` builds the same plan and refuses with its refusals, so
the page never promises what the command refuses.

What only executing the step can find stays in `change_phase`: the drain leaving entries
behind, the final reconciliation finding a wallet missing or different, writes still running
past the wait, a copy back MongoDB refuses. The effects say that these can happen.

The criterion is informational for now: no step is refused for it.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from flags.models import Milestone
from flags.phases import MigrationState, Phase, current_state, state_for_phase
from migration.criteria import OutboxDepth, StepCriterion, next_step_criterion, outbox_depth_of
from migration.outbox import MirrorOutbox
from registry.models import WalletTransfer


def target_state(
    phase: Phase,
    current: MigrationState,
    *,
    rollout_percent: Decimal | None = None,
    shadow_percent: Decimal | None = None,
) -> MigrationState:
    """The flags of `phase`, keeping the current shares unless new ones are given."""
    shadow = shadow_percent if shadow_percent is not None else current.shadow_read_percent
    rollout = rollout_percent if rollout_percent is not None else current.read_rollout_percent
    return state_for_phase(phase, shadow_percent=shadow, rollout_percent=rollout)


@dataclass(frozen=True)
class Step:
    """A move asked for: from the flags as they are to those of `phase`."""

    before: MigrationState
    phase: Phase
    after: MigrationState

    @classmethod
    def to(
        cls,
        phase: Phase,
        before: MigrationState,
        *,
        rollout_percent: Decimal | None = None,
        shadow_percent: Decimal | None = None,
    ) -> Step:
        """The step to `phase`, keeping the current shares unless new ones are given."""
        after = target_state(
            phase, before, rollout_percent=rollout_percent, shadow_percent=shadow_percent
        )
        return cls(before, phase, after)

    @property
    def enters_tigerbeetle_only(self) -> bool:
        return self.before.writes_to_mongo and not self.after.writes_to_mongo

    @property
    def leaves_tigerbeetle_only(self) -> bool:
        return self.after.writes_to_mongo and not self.before.writes_to_mongo

    @property
    def stops_dual_write(self) -> bool:
        """Dual write ends while MongoDB stays the store written (1-3 -> 0)."""
        return (
            self.before.writes_to_mongo == self.after.writes_to_mongo
            and self.before.dual_write
            and not self.after.dual_write
        )

    @property
    def moves_writes(self) -> bool:
        """Whether it moves where money is written (and so needs a confirmation)."""
        return (
            self.before.dual_write != self.after.dual_write
            or self.before.writes_to_mongo != self.after.writes_to_mongo
        )

    @property
    def pauses_writes(self) -> bool:
        """Whether writes pause while it runs: it changes the store written."""
        return self.enters_tigerbeetle_only or self.leaves_tigerbeetle_only

    @property
    def reads_outbox(self) -> bool:
        """Whether its rules read the outbox's depth."""
        return self.enters_tigerbeetle_only or self.stops_dual_write

    @property
    def forward(self) -> bool:
        """Towards TigerBeetle: a later phase, or a wider read rollout in phase 3."""
        if self.phase != self.before.phase:
            return self.phase > self.before.phase
        return (
            self.phase == Phase.READ_CUTOVER
            and self.after.read_rollout_percent > self.before.read_rollout_percent
        )


@dataclass(frozen=True)
class StepFacts:
    """What the rules of a step read, gathered once (`gather_step_facts`)."""

    writes_wait_s: float
    backfill_completed: bool
    # The outbox's depth: None when MongoDB does not answer, and for a step whose rules do
    # not read it (`Step.reads_outbox`).
    outbox: OutboxDepth | None = None
    # TigerBeetle-only writes and voids still to be copied back (read when leaving phase 4).
    copy_back_writes: int = 0
    copy_back_voids: int = 0
    # The criterion a forward step waits for (None for other steps).
    criterion: StepCriterion | None = None


class RefusalKind(enum.StrEnum):
    """The rule a refusal comes from."""

    FLAGS = "flags"  # a combination of flags the migration must never be in
    SHADOW_SHARE = "shadow_share"  # phase 2 without a share of reads to compare
    MONGO_SILENT = "mongo_silent"  # entering phase 4: the outbox cannot be read
    OUTBOX_NOT_EMPTY = "outbox_not_empty"  # entering phase 4: parked or unbackfilled entries
    BACKFILL_NOT_COMPLETED = "backfill_not_completed"  # entering phase 4 before the backfill


@dataclass(frozen=True)
class Refusal:
    """Why a step is refused before anything starts, in words for the page and the command."""

    kind: RefusalKind
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class StepPlan(Step):
    """A step with what it will do, what refuses it and the criterion it waits for."""

    effects: tuple[str, ...]
    refusals: tuple[Refusal, ...]
    criterion: StepCriterion | None

    def refusal_message(self) -> str:
        """The refusals in one sentence (the command's, and the audit's)."""
        return "; ".join(refusal.reason for refusal in self.refusals)


def plan_step(step: Step, facts: StepFacts) -> StepPlan:
    """The plan of `step` over `facts`: pure, so the page and the command agree."""
    return StepPlan(
        step.before,
        step.phase,
        step.after,
        effects=tuple(_effects(step, facts)),
        refusals=tuple(_refusals(step, facts)),
        criterion=facts.criterion if step.forward else None,
    )


def gather_step_facts(step: Step, *, outbox: MirrorOutbox) -> StepFacts:
    """Read what the rules of `step` need, once: the outbox only when they use it."""
    read_depth = functools.cache(lambda: outbox_depth_of(outbox))
    copy_back_writes = copy_back_voids = 0
    if step.leaves_tigerbeetle_only:
        copy_back_writes = WalletTransfer.objects.filter(needs_copy_back=True).count()
        copy_back_voids = WalletTransfer.objects.filter(void_needs_copy_back=True).count()
    criterion = None
    if step.forward:
        criterion = next_step_criterion(step.before, outbox_depth=read_depth)
    return StepFacts(
        writes_wait_s=settings.PHASE_CHANGE_WRITES_WAIT_S,
        backfill_completed=Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists(),
        outbox=read_depth() if step.reads_outbox else None,
        copy_back_writes=copy_back_writes,
        copy_back_voids=copy_back_voids,
        criterion=criterion,
    )


def plan_phase_change(
    phase: Phase,
    *,
    outbox: MirrorOutbox,
    rollout_percent: Decimal | None = None,
    shadow_percent: Decimal | None = None,
) -> StepPlan:
    """The plan of moving from the phase the flags are in now to `phase`."""
    step = Step.to(
        phase, current_state(), rollout_percent=rollout_percent, shadow_percent=shadow_percent
    )
    return plan_step(step, gather_step_facts(step, outbox=outbox))


def _refusals(step: Step, facts: StepFacts) -> list[Refusal]:
    found = []
    if step.phase == Phase.SHADOW_READ and step.after.shadow_read_percent <= 0:
        # No silent default: the share decides how many reads pay for a comparison.
        found.append(
            Refusal(
                RefusalKind.SHADOW_SHARE,
                "phase 2 compares a share of reads with TigerBeetle: give that share (above 0%)",
            )
        )
    found += [Refusal(RefusalKind.FLAGS, problem) for problem in step.after.problems()]
    if step.enters_tigerbeetle_only:
        found += _refusals_entering_tigerbeetle_only(facts)
    return found


def _refusals_entering_tigerbeetle_only(facts: StepFacts) -> list[Refusal]:
    found = []
    depth = facts.outbox
    if depth is None:
        found.append(
            Refusal(
                RefusalKind.MONGO_SILENT, "MongoDB does not answer: the outbox cannot be drained."
            )
        )
    elif depth.parked or depth.awaiting_backfill:
        found.append(
            Refusal(
                RefusalKind.OUTBOX_NOT_EMPTY,
                f"The outbox must be empty: {depth.parked} parked entries and "
                f"{depth.awaiting_backfill} waiting for the backfill.",
            )
        )
    if not facts.backfill_completed:
        found.append(
            Refusal(
                RefusalKind.BACKFILL_NOT_COMPLETED,
                "The backfill has not completed: start it with “Start the backfill” on the "
                "migration phase page and wait for it to finish.",
            )
        )
    return found


def _effects(step: Step, facts: StepFacts) -> list[str]:
    if step.enters_tigerbeetle_only:
        return _effects_entering_tigerbeetle_only(facts)
    if step.leaves_tigerbeetle_only:
        return [
            _pause(facts),
            f"{facts.copy_back_writes} transactions and {facts.copy_back_voids} voids "
            "TigerBeetle took as the only store are copied back into MongoDB, in "
            "TigerBeetle's order.",
            "MongoDB is written again"
            + (", and mirrored into TigerBeetle (dual write)." if step.after.dual_write else "."),
        ]
    if step.stops_dual_write:
        depth = facts.outbox
        pending = f" {depth.pending} entries still pending stay unmirrored." if depth else ""
        return ["Dual write stops: TigerBeetle no longer receives MongoDB's writes." + pending]
    if step.after.dual_write and not step.before.dual_write:
        return ["Dual write starts: every MongoDB write is also mirrored into TigerBeetle."]
    return []


def _effects_entering_tigerbeetle_only(facts: StepFacts) -> list[str]:
    effects = [_pause(facts)]
    if facts.outbox is not None:
        effects.append(
            f"The mirror applies the {facts.outbox.pending} outbox entries still pending "
            "to TigerBeetle; an entry it cannot apply refuses the change."
        )
        effects.append(
            "Every MongoDB wallet is then reconciled against TigerBeetle; a wallet missing "
            "or different there refuses the change, and writes resume on MongoDB."
        )
    effects.append(
        "TigerBeetle becomes the only store written and serves every balance read; "
        "MongoDB is no longer written and falls behind."
    )
    effects.append(
        "The dual-write switch stays on: a MongoDB write already under way is still "
        "mirrored, and stepping back resumes dual write at once."
    )
    return effects


def _pause(facts: StepFacts) -> str:
    return (
        "Writes pause until the change is done: clients get 503 writes_paused and retry. "
        f"Writes already under way get up to {facts.writes_wait_s:g} s to finish, or the "
        "change is refused."
    )
