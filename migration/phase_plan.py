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

A forward step (a later phase, or a wider read rollout in phase 3) is gated: it goes one
phase, or one rollout step (`READ_ROLLOUT_STEPS`), at a time; it is refused while the outbox
holds parked entries or the last reconciliation has open mismatches (acknowledged legacy
wallets set aside, `migration.legacy_cases`), and until its criterion (`migration.criteria`)
has held on each of the last `MIGRATION_CRITERION_DAYS` days. An override, by a person who
holds `flags.override_phase_criterion` and with a written reason, lifts the criterion's
refusal and nothing else; the phase change's audit row keeps it with the criterion's figures.
A step back is never gated.

The dual-write share (the share of clients whose wallets are dual-written) rises the same way:
a raise in phases 1-3 is a forward step through `DUAL_WRITE_SHARE_STEPS`, one at a time,
gated like the others, waiting for the reconciliation's match rate (of the wallets inside
the share) as phase 1 -> 2 does. Lowering it is a step back, allowed in phases 1 and 2 only
(in phase 3 TigerBeetle may serve the reads of clients it would stop mirroring). A step
changes the dual-write share alone (not with the phase or another share), except from phase
0 into phase 1 (dual write may start at a share); in phase 0 the share is set freely (it
says which wallets a backfill imports). Phase 4 needs every client dual-written (100 %).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.template.defaultfilters import pluralize
from django.utils import timezone
from pymongo.errors import PyMongoError

from domain import errors
from flags.models import Milestone
from flags.phases import MigrationState, Phase, current_state, state_for_phase
from migration import criteria
from migration.criteria import OpenMismatches, OutboxDepth, StepCriterion, outbox_depth_of
from migration.entry_check import entry_refusal
from migration.legacy_cases import REASON_LENGTH_MIN
from migration.outbox import MirrorOutbox
from registry.models import WalletHold, WalletTransfer

OVERRIDE_PERMISSION = "flags.override_phase_criterion"
DEFAULT_ROLLOUT_STEPS = (Decimal(1), Decimal(5), Decimal(25), Decimal(50), Decimal(100))
PHASE_NAMES = {
    Phase.LEGACY: "phase 0 - legacy",
    Phase.DUAL_WRITE: "phase 1 - dual write",
    Phase.SHADOW_READ: "phase 2 - shadow read",
    Phase.READ_CUTOVER: "phase 3 - read cutover",
    Phase.TIGERBEETLE_ONLY: "phase 4 - TigerBeetle only",
}


def target_state(
    phase: Phase,
    current: MigrationState,
    *,
    rollout_percent: Decimal | None = None,
    shadow_percent: Decimal | None = None,
    dual_write_percent: Decimal | None = None,
) -> MigrationState:
    """The flags of `phase`, keeping the current shares unless new ones are given."""
    shadow = shadow_percent if shadow_percent is not None else current.shadow_read_percent
    rollout = rollout_percent if rollout_percent is not None else current.read_rollout_percent
    dual = dual_write_percent if dual_write_percent is not None else current.dual_write_percent
    return state_for_phase(
        phase, shadow_percent=shadow, rollout_percent=rollout, dual_write_percent=dual
    )


def next_rollout_step(share: Decimal, steps: tuple[Decimal, ...]) -> Decimal | None:
    """The first rollout step above `share` (None at 100 %)."""
    return next((step for step in steps if step > share), None)


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
        dual_write_percent: Decimal | None = None,
    ) -> Step:
        """The step to `phase`, keeping the current shares unless new ones are given."""
        after = target_state(
            phase,
            before,
            rollout_percent=rollout_percent,
            shadow_percent=shadow_percent,
            dual_write_percent=dual_write_percent,
        )
        return cls(before, phase, after)

    @property
    def enters_tigerbeetle_only(self) -> bool:
        return self.before.writes_to_mongo and not self.after.writes_to_mongo

    @property
    def leaves_tigerbeetle_only(self) -> bool:
        return self.after.writes_to_mongo and not self.before.writes_to_mongo

    @property
    def starts_dual_write(self) -> bool:
        """Dual write starts while MongoDB stays the store written (0 -> 1)."""
        return self.after.writes_to_mongo and self.after.dual_write and not self.before.dual_write

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
        """Whether its rules read the outbox's depth (a forward step counts parked entries)."""
        return self.forward or self.enters_tigerbeetle_only or self.stops_dual_write

    @property
    def rollout_before(self) -> Decimal:
        """The share of clients TigerBeetle serves before the step (0 before phase 3)."""
        return self.before.read_rollout_percent if self.before.read_cutover else Decimal(0)

    @property
    def raises_rollout(self) -> bool:
        """Into or within phase 3 with a wider share of clients than now."""
        return (
            self.phase == Phase.READ_CUTOVER
            and self.before.phase <= Phase.READ_CUTOVER
            and self.after.read_rollout_percent > self.rollout_before
        )

    @property
    def changes_dual_write_share(self) -> bool:
        return self.after.dual_write_percent != self.before.dual_write_percent

    @property
    def raises_dual_write_share(self) -> bool:
        """Within phases 1-3, a wider share of clients dual-written than now."""
        return (
            self.phase == self.before.phase
            and self.before.mirrors_to_tigerbeetle
            and self.after.dual_write_percent > self.before.dual_write_percent
        )

    @property
    def forward(self) -> bool:
        """Towards TigerBeetle: a later phase, a wider read rollout in phase 3, or a wider
        dual-write share in phases 1-3."""
        if self.phase != self.before.phase:
            return self.phase > self.before.phase
        return self.raises_rollout or self.raises_dual_write_share

    @property
    def skips_phases(self) -> bool:
        """Forward by more than one phase (0 -> 2, 1 -> 3, ...)."""
        return self.phase > self.before.phase + 1

    def rollout_step_passed(self, steps: tuple[Decimal, ...]) -> Decimal | None:
        """The rollout step a raise within phase 3 goes past (the share it is at now)."""
        if self.before.phase != Phase.READ_CUTOVER or not self.raises_rollout:
            return None
        return self.rollout_before if self.rollout_before in steps else None

    def skips_dual_write_share_steps(self, steps: tuple[Decimal, ...]) -> bool:
        """A raise of the dual-write share beyond its next step."""
        if not self.raises_dual_write_share:
            return False
        following = next_rollout_step(self.before.dual_write_percent, steps)
        return following is None or self.after.dual_write_percent > following

    def skips_rollout_steps(self, steps: tuple[Decimal, ...]) -> bool:
        """A raise beyond the next rollout step."""
        if not self.raises_rollout:
            return False
        following = next_rollout_step(self.rollout_before, steps)
        return following is None or self.after.read_rollout_percent > following


@dataclass(frozen=True)
class Override:
    """An override asked for: by whom, whether they hold `OVERRIDE_PERMISSION`, and why."""

    actor: str
    permitted: bool
    reason: str


def override_asked(user: AbstractBaseUser | AnonymousUser | None, *, reason: str) -> Override:
    """The override `user` asks for (the page's user; the command's `--actor`, looked up)."""
    permitted = bool(
        isinstance(user, PermissionsMixin) and user.is_active and user.has_perm(OVERRIDE_PERMISSION)
    )
    actor = user.get_username() if user is not None and user.is_authenticated else ""
    return Override(actor=actor, permitted=permitted, reason=reason.strip())


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
    # The last reconciliation's open mismatches (read for a forward step).
    open_mismatches: OpenMismatches | None = None
    rollout_steps: tuple[Decimal, ...] = DEFAULT_ROLLOUT_STEPS
    override: Override | None = None
    dual_write_share_steps: tuple[Decimal, ...] = DEFAULT_ROLLOUT_STEPS
    # Holds open on TigerBeetle when leaving phase 4: copied back (docs/holds.md).
    open_holds: int = 0
    # Entering phase 4: why its entry check would refuse it before the pause (no clean, recent
    # reconciliation run of every wallet, or too many wallets changed since), or None.
    entry_refusal: str | None = None


class RefusalKind(enum.StrEnum):
    """The rule a refusal comes from."""

    FLAGS = "flags"  # a combination of flags the migration must never be in
    SHADOW_SHARE = "shadow_share"  # phase 2 without a share of reads to compare
    PHASE_SKIPPED = "phase_skipped"  # forward by more than one phase
    ROLLOUT_SKIPPED = "rollout_skipped"  # a wider rollout beyond the next step
    SHARE_SKIPPED = "share_skipped"  # a wider dual-write share beyond the next step
    SHARE_WITH_PHASE = "share_with_phase"  # the dual-write share with another change at once
    SHARE_LOWERED_IN_CUTOVER = "share_lowered_in_cutover"  # TigerBeetle may serve those reads
    MONGO_SILENT = "mongo_silent"  # a forward step: the outbox cannot be read
    PARKED_ENTRIES = "parked_entries"  # a forward step while the mirror has given up on some
    OUTBOX_NOT_EMPTY = "outbox_not_empty"  # entering phase 4: entries wait for the backfill
    BACKFILL_NOT_COMPLETED = "backfill_not_completed"  # entering phase 4 before the backfill
    NO_ENTRY_BASIS = "no_entry_basis"  # entering phase 4 without a run its pause can build on
    OPEN_MISMATCHES = "open_mismatches"  # a forward step while wallets differ
    CRITERION_NOT_HELD = "criterion_not_held"  # a forward step before its criterion held
    OVERRIDE_NOT_PERMITTED = "override_not_permitted"  # asked by someone without the right
    OVERRIDE_WITHOUT_REASON = "override_without_reason"  # asked without a written reason


@dataclass(frozen=True)
class Refusal:
    """Why a step is refused before anything starts, and what would lift it, in words for
    the page and the command."""

    kind: RefusalKind
    reason: str
    # The list where the cases behind it are (`migration.criteria.CASES_*`), and the action
    # that mends them (`migration.criteria.ACTION_*`; the back-office offers it).
    cases: str = ""
    link_text: str = ""
    action: str = ""

    def __str__(self) -> str:
        return self.reason

    @property
    def overridable(self) -> bool:
        """Only the criterion's refusal can be overridden."""
        return self.kind == RefusalKind.CRITERION_NOT_HELD


@dataclass(frozen=True)
class StepPlan(Step):
    """A step with what it will do, what refuses it and the criterion it waits for."""

    effects: tuple[str, ...]
    refusals: tuple[Refusal, ...]
    criterion: StepCriterion | None
    # Taken although its criterion has not held: an override lifted that refusal.
    overridden: bool = False
    override_reason: str = ""

    def refusal_message(self) -> str:
        """The refusals in one sentence (the command's, and the audit's)."""
        return "; ".join(refusal.reason for refusal in self.refusals)

    def criterion_figures(self) -> dict[str, object]:
        """The criterion as it stood, for the phase change's audit row ({} without one)."""
        return self.criterion.figures() if self.criterion is not None else {}


def plan_step(step: Step, facts: StepFacts) -> StepPlan:
    """The plan of `step` over `facts`: pure, so the page and the command agree."""
    refusals = _refusals(step, facts)
    overridden = False
    if step.forward and facts.override is not None:
        problems = _override_problems(facts.override)
        refusals += problems
        if not problems and any(refusal.overridable for refusal in refusals):
            refusals = [refusal for refusal in refusals if not refusal.overridable]
            overridden = True
    return StepPlan(
        step.before,
        step.phase,
        step.after,
        effects=tuple(_effects(step, facts)),
        refusals=tuple(refusals),
        criterion=facts.criterion if step.forward else None,
        overridden=overridden,
        override_reason=facts.override.reason if overridden and facts.override else "",
    )


def criterion_of(
    step: Step, *, required_days: int, rollout_steps: tuple[Decimal, ...]
) -> StepCriterion | None:
    """The criterion a forward step waits for: that of the step out of the phase it is in
    (in phase 3, a wider rollout past a step, or phase 4; one that gates nothing where the
    plan names none); None for a step that is not forward."""
    if not step.forward:
        return None
    phase = step.before.phase
    if step.raises_dual_write_share:
        return criteria.match_rate_criterion(
            phase,
            next_step=(f"a dual-write share of {criteria.percent(step.after.dual_write_percent)}%"),
            required_days=required_days,
        )
    following = PHASE_NAMES.get(Phase(min(phase + 1, Phase.TIGERBEETLE_ONLY)), "")
    if phase == Phase.LEGACY:
        return criteria.no_criterion(phase, next_step=following)
    if phase == Phase.DUAL_WRITE:
        return criteria.match_rate_criterion(
            phase, next_step=following, required_days=required_days
        )
    if phase == Phase.SHADOW_READ:
        return criteria.latency_criterion(phase, next_step=following, required_days=required_days)
    if step.phase == Phase.TIGERBEETLE_ONLY:
        return criteria.fallback_criterion(
            phase, next_step=following, required_days=required_days, share_at_least=Decimal(100)
        )
    passed = step.rollout_step_passed(rollout_steps)
    if passed is None:
        return criteria.no_criterion(
            phase,
            next_step=f"a read rollout of {criteria.percent(step.after.read_rollout_percent)}%",
            statement="None: a wider share up to the next rollout step passes no step",
        )
    return criteria.fallback_criterion(
        phase,
        next_step=f"a read rollout above {criteria.percent(passed)}%",
        required_days=required_days,
        share_at_least=passed,
    )


def gather_step_facts(
    step: Step, *, outbox: MirrorOutbox, override: Override | None = None
) -> StepFacts:
    """Read what the rules of `step` need, once: the outbox only when they use it."""
    copy_back_writes = copy_back_voids = 0
    if step.leaves_tigerbeetle_only:
        copy_back_writes = WalletTransfer.objects.filter(needs_copy_back=True).count()
        copy_back_voids = WalletTransfer.objects.filter(void_needs_copy_back=True).count()
    rollout_steps = tuple(settings.READ_ROLLOUT_STEPS)
    share_steps = tuple(settings.DUAL_WRITE_SHARE_STEPS)
    return StepFacts(
        open_holds=_open_holds(step),
        writes_wait_s=settings.PHASE_CHANGE_WRITES_WAIT_S,
        backfill_completed=Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists(),
        outbox=outbox_depth_of(outbox) if step.reads_outbox else None,
        copy_back_writes=copy_back_writes,
        copy_back_voids=copy_back_voids,
        criterion=criterion_of(
            step,
            required_days=settings.MIGRATION_CRITERION_DAYS,
            rollout_steps=rollout_steps,
        ),
        open_mismatches=criteria.open_mismatches() if step.forward else None,
        rollout_steps=rollout_steps,
        override=override,
        dual_write_share_steps=share_steps,
        entry_refusal=_entry_refusal(step, outbox),
    )


def _entry_refusal(step: Step, outbox: MirrorOutbox) -> str | None:
    """Entering phase 4: what its entry check would refuse now. MongoDB not answering is
    another refusal's (MONGO_SILENT, from the outbox's depth), not this one's."""
    if not step.enters_tigerbeetle_only:
        return None
    try:
        return entry_refusal(outbox.database)
    except (errors.StoreUnavailable, PyMongoError):
        return None


def _open_holds(step: Step) -> int:
    """Holds open on TigerBeetle now when the step leaves phase 4: copied back to MongoDB.
    MongoDB's open holds need nothing when dual write starts: a wallet born with the log
    carries them through the mirror, a legacy wallet through the backfill (docs/holds.md)."""
    if not step.leaves_tigerbeetle_only:
        return 0
    return WalletHold.objects.filter(
        state=WalletHold.State.OPEN, expires_at__gt=timezone.now()
    ).count()


def plan_phase_change(
    phase: Phase,
    *,
    outbox: MirrorOutbox,
    rollout_percent: Decimal | None = None,
    shadow_percent: Decimal | None = None,
    dual_write_percent: Decimal | None = None,
    override: Override | None = None,
) -> StepPlan:
    """The plan of moving from the phase the flags are in now to `phase`."""
    step = Step.to(
        phase,
        current_state(),
        rollout_percent=rollout_percent,
        shadow_percent=shadow_percent,
        dual_write_percent=dual_write_percent,
    )
    return plan_step(step, gather_step_facts(step, outbox=outbox, override=override))


def next_step(
    state: MigrationState,
    *,
    rollout_steps: tuple[Decimal, ...],
    share_steps: tuple[Decimal, ...] | None = None,
) -> Step | None:
    """The step forward from `state`: in phases 1-3 with a partial dual-write share, its next
    step; else the next phase, in phase 3 the next rollout step (then phase 4); None in
    phase 4."""
    phase = state.phase
    if phase == Phase.TIGERBEETLE_ONLY:
        return None
    if state.mirrors_to_tigerbeetle and state.dual_write_percent < 100:
        steps = share_steps if share_steps is not None else tuple(settings.DUAL_WRITE_SHARE_STEPS)
        following_share = next_rollout_step(state.dual_write_percent, steps)
        assert following_share is not None  # the steps end with 100
        return Step.to(phase, state, dual_write_percent=following_share)
    if phase == Phase.SHADOW_READ:
        return Step.to(Phase.READ_CUTOVER, state, rollout_percent=rollout_steps[0])
    if phase == Phase.READ_CUTOVER:
        following = next_rollout_step(state.read_rollout_percent, rollout_steps)
        if following is not None:
            return Step.to(Phase.READ_CUTOVER, state, rollout_percent=following)
        return Step.to(Phase.TIGERBEETLE_ONLY, state)
    return Step.to(Phase(phase + 1), state)


def preview_next_step(*, outbox: MirrorOutbox) -> StepPlan | None:
    """The plan of the step forward from now (the phase page and the dashboard show its
    criterion and what refuses it); None in phase 4. The share a phase-2 step would use is
    the person's to choose, so its refusal is left out."""
    step = next_step(current_state(), rollout_steps=tuple(settings.READ_ROLLOUT_STEPS))
    if step is None:
        return None
    plan = plan_step(step, gather_step_facts(step, outbox=outbox))
    shown = tuple(refusal for refusal in plan.refusals if refusal.kind != RefusalKind.SHADOW_SHARE)
    return dataclasses.replace(plan, refusals=shown)


def next_step_criterion(
    state: MigrationState, *, outbox_depth: criteria.OutboxDepthReader
) -> StepCriterion:
    """The criterion the step forward from `state` waits for (in phase 4, where there is no
    step forward, zero data loss as it stands)."""
    step = next_step(state, rollout_steps=tuple(settings.READ_ROLLOUT_STEPS))
    if step is None:
        return criteria.writes_lost_criterion(state.phase, outbox_depth=outbox_depth)
    found = criterion_of(
        step,
        required_days=settings.MIGRATION_CRITERION_DAYS,
        rollout_steps=tuple(settings.READ_ROLLOUT_STEPS),
    )
    assert found is not None  # a step forward has one
    return found


# --- refusals -------------------------------------------------------------------------------


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
    found += _dual_write_share_refusals(step)
    if step.forward:
        found += _gate_refusals(step, facts)
    return found


def _dual_write_share_refusals(step: Step) -> list[Refusal]:
    """A share changed with the phase (but when dual write starts), or lowered while
    TigerBeetle may serve the reads of clients it would stop mirroring."""
    if not step.changes_dual_write_share:
        return []
    found = []
    entering_dual_write = step.before.phase == Phase.LEGACY and step.phase == Phase.DUAL_WRITE
    others_change = step.phase != step.before.phase or (
        dataclasses.replace(step.after, dual_write_percent=step.before.dual_write_percent)
        != step.before
    )
    if others_change and not entering_dual_write:
        found.append(
            Refusal(
                RefusalKind.SHARE_WITH_PHASE,
                "A step changes the dual-write share alone, not with the phase or another "
                "share (only dual write may start at a share): take them one after the other.",
            )
        )
    elif (
        step.phase == step.before.phase
        and step.phase >= Phase.READ_CUTOVER
        and step.after.dual_write_percent < step.before.dual_write_percent
    ):
        found.append(
            Refusal(
                RefusalKind.SHARE_LOWERED_IN_CUTOVER,
                "The dual-write share is lowered only in phases 1 and 2: in phase 3 "
                "TigerBeetle may serve reads of the clients it would stop mirroring. Step "
                "back to phase 2 first.",
            )
        )
    return found


def _gate_refusals(step: Step, facts: StepFacts) -> list[Refusal]:
    """What refuses any forward step: skipping, parked entries, open mismatches, and (for
    phase 4) an outbox the backfill still holds up; then the criterion not held."""
    found = _skip_refusals(step, facts)
    depth = facts.outbox
    if depth is None:
        found.append(
            Refusal(
                RefusalKind.MONGO_SILENT,
                "MongoDB does not answer: the outbox cannot be drained."
                if step.enters_tigerbeetle_only
                else "MongoDB does not answer: the outbox's parked entries cannot be counted; "
                "try again once it answers.",
            )
        )
    elif depth.parked:
        found.append(
            Refusal(
                RefusalKind.PARKED_ENTRIES,
                f"{depth.parked} outbox entries are parked (the mirror gave up on them): fix "
                "their cause, requeue them and let the mirror apply them, then try again.",
                action=criteria.ACTION_REQUEUE_PARKED,
            )
        )
    if step.enters_tigerbeetle_only:
        found += _refusals_entering_tigerbeetle_only(facts)
    if facts.open_mismatches is not None:
        found += _open_mismatch_refusals(facts.open_mismatches)
    criterion = facts.criterion
    if criterion is not None and not criterion.holds:
        found.append(Refusal(RefusalKind.CRITERION_NOT_HELD, _criterion_refusal(criterion)))
    return found


def _open_mismatch_refusals(mismatches: criteria.OpenMismatches) -> list[Refusal]:
    """The last reconciliation's open cases: wallets that differ (a re-check, once fixed),
    and the transfer registry's differences (each case's repair)."""
    found = []
    wallets = mismatches.count - mismatches.transfer_differences
    if wallets:
        found.append(
            Refusal(
                RefusalKind.OPEN_MISMATCHES,
                f"{_wallets(wallets)} {'differs' if wallets == 1 else 'differ'} in the last "
                f"reconciliation (run "
                f"{mismatches.run_id}) and no re-check has resolved them: once fixed, re-check "
                "them from the reconciliation mismatches; a legacy wallet whose MongoDB fields "
                "disagree among themselves is acknowledged by support there instead.",
                criteria.CASES_MISMATCHES,
                "Open mismatches",
                action=criteria.ACTION_RECHECK_MISMATCHED,
            )
        )
    if mismatches.transfer_differences:
        found.append(
            Refusal(
                RefusalKind.OPEN_MISMATCHES,
                f"{mismatches.transfer_differences} differences between the transfer registry "
                f"and TigerBeetle in the last reconciliation (run {mismatches.run_id}): each "
                "case's page has its repair, or says why none.",
                criteria.CASES_MISMATCHES,
                "Open mismatches",
            )
        )
    return found


def _skip_refusals(step: Step, facts: StepFacts) -> list[Refusal]:
    if step.skips_phases:
        next_phase = Phase(step.before.phase + 1)
        return [
            Refusal(
                RefusalKind.PHASE_SKIPPED,
                f"Forward moves go one phase at a time: from phase {int(step.before.phase)} "
                f"the next is {PHASE_NAMES[next_phase]}; take that step first.",
            )
        ]
    if step.skips_dual_write_share_steps(facts.dual_write_share_steps):
        following_share = next_rollout_step(
            step.before.dual_write_percent, facts.dual_write_share_steps
        )
        share_steps = ", ".join(criteria.percent(share) for share in facts.dual_write_share_steps)
        then = (
            f"the next is {criteria.percent(following_share)}%; raise it to that first"
            if following_share is not None
            else "there is no step further"
        )
        return [
            Refusal(
                RefusalKind.SHARE_SKIPPED,
                f"The dual-write share rises one step at a time ({share_steps}%): from "
                f"{criteria.percent(step.before.dual_write_percent)}% {then}.",
            )
        ]
    if step.skips_rollout_steps(facts.rollout_steps):
        following = next_rollout_step(step.rollout_before, facts.rollout_steps)
        steps = ", ".join(criteria.percent(share) for share in facts.rollout_steps)
        then = (
            f"the next is {criteria.percent(following)}%; raise it to that first"
            if following is not None
            else "there is no step further"
        )
        return [
            Refusal(
                RefusalKind.ROLLOUT_SKIPPED,
                f"The read rollout rises one step at a time ({steps}%): from "
                f"{criteria.percent(step.rollout_before)}% {then}.",
            )
        ]
    return []


def _criterion_refusal(criterion: StepCriterion) -> str:
    held = (
        "there is no data yet"
        if criterion.met is None
        else f"it held {criterion.held_days} of the {criterion.required_days} days"
    )
    return (
        f"Its criterion has not held on each of the last {criterion.required_days} days "
        f"({criterion.statement}): {held}; now {criterion.now}. Wait until it has, or a "
        "person holding the “override a phase criterion” permission overrides it with a "
        "written reason."
    )


def _override_problems(override: Override) -> list[Refusal]:
    found = []
    if not override.permitted:
        who = (
            f"{override.actor} does not hold it"
            if override.actor
            else "no such person was named (the command names them with --actor)"
        )
        found.append(
            Refusal(
                RefusalKind.OVERRIDE_NOT_PERMITTED,
                "An override is taken only by a person holding the “override a phase "
                f"criterion” permission, and {who}.",
            )
        )
    if len(override.reason) < REASON_LENGTH_MIN:
        found.append(
            Refusal(
                RefusalKind.OVERRIDE_WITHOUT_REASON,
                f"An override needs a written reason (at least {REASON_LENGTH_MIN} "
                "characters): why the step may be taken although its criterion has not held.",
            )
        )
    return found


def _refusals_entering_tigerbeetle_only(facts: StepFacts) -> list[Refusal]:
    found = []
    depth = facts.outbox
    if depth is not None and depth.awaiting_backfill:
        found.append(
            Refusal(
                RefusalKind.OUTBOX_NOT_EMPTY,
                f"The outbox must be empty: {depth.awaiting_backfill} entries wait for the "
                "backfill.",
            )
        )
    if not facts.backfill_completed:
        found.append(
            Refusal(
                RefusalKind.BACKFILL_NOT_COMPLETED,
                "The backfill has not completed: start it with “Start the backfill” on the "
                "migration phase page and wait for it to finish.",
                criteria.CASES_MILESTONES,
                "Milestones",
            )
        )
    if facts.entry_refusal:
        reason = facts.entry_refusal
        found.append(Refusal(RefusalKind.NO_ENTRY_BASIS, reason[:1].upper() + reason[1:] + "."))
    return found


# --- effects --------------------------------------------------------------------------------


def _effects(step: Step, facts: StepFacts) -> list[str]:
    effects = _phase_effects(step, facts)
    if step.changes_dual_write_share:
        effects.append(_share_effect(step))
    return effects


def _share_effect(step: Step) -> str:
    before = criteria.percent(step.before.dual_write_percent)
    after = criteria.percent(step.after.dual_write_percent)
    if not step.after.mirrors_to_tigerbeetle:
        return (
            f"The dual-write share becomes {after}% of clients (from {before}%): the wallets "
            "a backfill imports, and those dual write will mirror once it starts."
        )
    if not step.before.mirrors_to_tigerbeetle:
        return (
            f"Dual write starts at a share of {after}% of clients (set at {before}% before): "
            "only their writes are mirrored; raising it takes in more, one step at a time."
        )
    if step.after.dual_write_percent > step.before.dual_write_percent:
        return (
            f"The dual-write share rises from {before}% to {after}% of clients: the writes "
            "of the clients it takes in, waiting in the outbox, go to the mirror (in order, "
            "each once), and the backfill is queued to import their legacy wallets."
        )
    return (
        f"The dual-write share falls from {before}% to {after}% of clients: the clients it "
        "leaves are no longer mirrored; their later writes wait in the outbox until a raise "
        "takes them in again, and reconciliation and shadow reads leave them out."
    )


def _phase_effects(step: Step, facts: StepFacts) -> list[str]:
    if step.enters_tigerbeetle_only:
        return _effects_entering_tigerbeetle_only(facts)
    if step.leaves_tigerbeetle_only:
        return [
            _pause(facts),
            f"{facts.copy_back_writes} transactions and {facts.copy_back_voids} voids "
            "TigerBeetle took as the only store are copied back into MongoDB, in "
            "TigerBeetle's order: on PostgreSQL most of them before writes pause, while "
            "phase 4 still takes writes; in the pause, what is left.",
            "MongoDB is written again"
            + (", and mirrored into TigerBeetle (dual write)." if step.after.dual_write else "."),
            *_holds_left_in_tigerbeetle(facts),
        ]
    if step.stops_dual_write:
        depth = facts.outbox
        pending = f" {depth.pending} entries still pending stay unmirrored." if depth else ""
        return ["Dual write stops: TigerBeetle no longer receives MongoDB's writes." + pending]
    if step.after.dual_write and not step.before.dual_write:
        if step.after.dual_write_percent < 100:
            return [
                "Dual write starts: the MongoDB writes of clients inside the dual-write share "
                "are also mirrored into TigerBeetle."
            ]
        return ["Dual write starts: every MongoDB write is also mirrored into TigerBeetle."]
    return []


def _holds_left_in_tigerbeetle(facts: StepFacts) -> list[str]:
    if not facts.open_holds:
        return []
    return [
        f"{facts.open_holds} holds open on TigerBeetle are copied back to MongoDB as open "
        "holds with the cluster's expiry (docs/holds.md): captured or released in phase 3, "
        "the mirror carries it into TigerBeetle."
    ]


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


def _wallets(count: int) -> str:
    return f"{count} wallet{pluralize(count)}"
