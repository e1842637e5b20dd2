"""The plan of a phase step, as a specification: what refuses a step before it starts, what
it says it will do, whether it needs a confirmation or pauses writes, and the criterion it
waits for. The rules are pure over the facts, so these tests need no database; the last ones
check the facts are gathered once, and only those a step's rules use. The gates of a forward
step (one phase at a time, parked entries, open mismatches, the criterion, the override) are
tests/migration/test_phase_gates.py."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from domain import errors
from flags.models import Milestone
from flags.phases import MigrationState, Phase, state_for_phase
from migration.criteria import StepCriterion
from migration.outbox import MirrorOutbox, OutboxDepth
from migration.phase_plan import (
    RefusalKind,
    Step,
    StepFacts,
    plan_phase_change,
    plan_step,
    target_state,
)
from tests.migration.conftest import Stores, enter_phase, new_key, tx

READY = StepFacts(
    writes_wait_s=30,
    backfill_completed=True,
    outbox=OutboxDepth(pending=0, parked=0, awaiting_backfill=0, oldest_pending_age_s=0),
)


def depth(*, pending: int = 0, parked: int = 0, awaiting_backfill: int = 0) -> OutboxDepth:
    return OutboxDepth(
        pending=pending, parked=parked, awaiting_backfill=awaiting_backfill, oldest_pending_age_s=0
    )


def in_phase(phase: Phase) -> MigrationState:
    return state_for_phase(phase, shadow_percent=Decimal(10), rollout_percent=Decimal(100))


def step(before: Phase, *, to: Phase, **shares: Decimal) -> Step:
    return Step.to(to, in_phase(before), **shares)


def refusal_kinds(before: Phase, *, to: Phase, facts: StepFacts) -> list[RefusalKind]:
    return [refusal.kind for refusal in plan_step(step(before, to=to), facts).refusals]


def criterion(met: bool | None = False) -> StepCriterion:
    return StepCriterion(Phase.SHADOW_READ, "phase 3 - read cutover", "a criterion", met, "now")


# --- refusals known before anything starts --------------------------------------------------


def test_entering_phase_4_before_the_backfill_is_refused() -> None:
    facts = replace(READY, backfill_completed=False)
    plan = plan_step(step(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY), facts)
    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.BACKFILL_NOT_COMPLETED]
    assert "“Start the backfill” on the migration phase page" in plan.refusal_message()


def test_entering_phase_4_with_parked_entries_is_refused_with_the_count() -> None:
    facts = replace(READY, outbox=depth(parked=2))
    plan = plan_step(step(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY), facts)
    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.PARKED_ENTRIES]
    assert plan.refusal_message().startswith("2 outbox entries are parked")


def test_entering_phase_4_with_entries_waiting_for_the_backfill_is_refused() -> None:
    facts = replace(READY, outbox=depth(awaiting_backfill=3))
    plan = plan_step(step(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY), facts)
    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.OUTBOX_NOT_EMPTY]
    assert plan.refusal_message() == "The outbox must be empty: 3 entries wait for the backfill."


def test_entering_phase_4_while_mongodb_does_not_answer_is_refused() -> None:
    facts = replace(READY, outbox=None)
    plan = plan_step(step(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY), facts)
    assert plan.refusal_message() == "MongoDB does not answer: the outbox cannot be drained."


def test_entering_phase_4_with_only_pending_entries_is_not_refused_before_it_starts() -> None:
    facts = replace(READY, outbox=depth(pending=5))
    assert refusal_kinds(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY, facts=facts) == []


def test_every_refusal_entering_phase_4_is_listed_at_once() -> None:
    facts = replace(READY, backfill_completed=False, outbox=depth(parked=1, awaiting_backfill=1))
    kinds = refusal_kinds(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY, facts=facts)
    assert kinds == [
        RefusalKind.PARKED_ENTRIES,
        RefusalKind.OUTBOX_NOT_EMPTY,
        RefusalKind.BACKFILL_NOT_COMPLETED,
    ]


def test_phase_2_without_a_shadow_share_is_refused_rather_than_guessing_one() -> None:
    plan = plan_step(Step.to(Phase.SHADOW_READ, in_phase(Phase.DUAL_WRITE)), READY)
    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.SHADOW_SHARE]
    assert plan.refusal_message().startswith("phase 2 compares a share of reads")


def test_a_share_outside_0_to_100_is_refused_by_the_flags_rule() -> None:
    plan = plan_step(
        step(Phase.DUAL_WRITE, to=Phase.SHADOW_READ, shadow_percent=Decimal(101)), READY
    )
    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.FLAGS]
    assert "between 0 and 100 percent" in plan.refusal_message()


def test_a_step_back_is_never_refused_for_the_outbox_the_backfill_or_the_criterion() -> None:
    silent_and_behind = StepFacts(
        writes_wait_s=30, backfill_completed=False, outbox=None, criterion=criterion(met=False)
    )
    for before, to in itertools.product(Phase, Phase):
        if to > before:
            continue
        plan = plan_step(step(before, to=to, shadow_percent=Decimal(5)), silent_and_behind)
        assert plan.refusals == (), (before, to)


def test_a_forward_step_whose_criterion_does_not_hold_is_refused() -> None:
    facts = replace(READY, criterion=criterion(met=False))
    plan = plan_step(step(Phase.SHADOW_READ, to=Phase.READ_CUTOVER), facts)
    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.CRITERION_NOT_HELD]


# --- confirmation and pause -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "to"),
    [
        (Phase.LEGACY, Phase.DUAL_WRITE),
        (Phase.READ_CUTOVER, Phase.LEGACY),
        (Phase.READ_CUTOVER, Phase.TIGERBEETLE_ONLY),
        (Phase.TIGERBEETLE_ONLY, Phase.READ_CUTOVER),
    ],
)
def test_a_step_that_moves_where_money_is_written_needs_a_confirmation(
    before: Phase, to: Phase
) -> None:
    assert step(before, to=to).moves_writes


@pytest.mark.parametrize(
    ("before", "to"),
    [
        (Phase.DUAL_WRITE, Phase.SHADOW_READ),
        (Phase.SHADOW_READ, Phase.READ_CUTOVER),
        (Phase.READ_CUTOVER, Phase.DUAL_WRITE),
        (Phase.READ_CUTOVER, Phase.READ_CUTOVER),
        (Phase.LEGACY, Phase.LEGACY),
    ],
)
def test_a_step_that_keeps_where_money_is_written_needs_no_confirmation(
    before: Phase, to: Phase
) -> None:
    assert not step(before, to=to).moves_writes


def test_only_entering_or_leaving_phase_4_pauses_writes() -> None:
    pausing = {
        (before, to)
        for before, to in itertools.product(Phase, Phase)
        if step(before, to=to).pauses_writes
    }
    assert pausing == {
        (before, to)
        for before, to in itertools.product(Phase, Phase)
        if (before == Phase.TIGERBEETLE_ONLY) != (to == Phase.TIGERBEETLE_ONLY)
    }


# --- effects --------------------------------------------------------------------------------


def test_entering_phase_4_says_the_pause_the_drain_and_the_reconciliation_with_the_numbers() -> (
    None
):
    facts = replace(READY, writes_wait_s=12.5, outbox=depth(pending=2))
    effects = plan_step(step(Phase.READ_CUTOVER, to=Phase.TIGERBEETLE_ONLY), facts).effects
    assert "Writes already under way get up to 12.5 s to finish" in effects[0]
    assert effects[1] == (
        "The mirror applies the 2 outbox entries still pending to TigerBeetle; an entry it "
        "cannot apply refuses the change."
    )
    assert "a wallet missing or different there refuses the change" in effects[2]
    assert "MongoDB is no longer written" in effects[3]
    assert "The dual-write switch stays on" in effects[4]


def test_leaving_phase_4_says_how_many_writes_and_voids_are_copied_back() -> None:
    facts = replace(READY, copy_back_writes=4, copy_back_voids=1)
    effects = plan_step(step(Phase.TIGERBEETLE_ONLY, to=Phase.READ_CUTOVER), facts).effects
    assert effects[1].startswith("4 transactions and 1 voids TigerBeetle took as the only store")
    assert effects[2] == "MongoDB is written again, and mirrored into TigerBeetle (dual write)."


def test_leaving_phase_4_for_phase_0_does_not_say_dual_write_resumes() -> None:
    effects = plan_step(step(Phase.TIGERBEETLE_ONLY, to=Phase.LEGACY), READY).effects
    assert effects[-1] == "MongoDB is written again."


def test_stopping_dual_write_says_how_many_entries_stay_unmirrored() -> None:
    facts = replace(READY, outbox=depth(pending=7))
    effects = plan_step(step(Phase.DUAL_WRITE, to=Phase.LEGACY), facts).effects
    assert effects == (
        "Dual write stops: TigerBeetle no longer receives MongoDB's writes. 7 entries still "
        "pending stay unmirrored.",
    )


def test_starting_dual_write_says_every_write_is_mirrored() -> None:
    effects = plan_step(step(Phase.LEGACY, to=Phase.DUAL_WRITE), READY).effects
    assert effects == ("Dual write starts: every MongoDB write is also mirrored into TigerBeetle.",)


def test_a_step_that_only_changes_reads_has_no_effects_to_confirm() -> None:
    assert plan_step(step(Phase.SHADOW_READ, to=Phase.READ_CUTOVER), READY).effects == ()


# --- which facts a step reads, and the criterion --------------------------------------------


def test_only_a_forward_step_or_stopping_dual_write_reads_the_outbox() -> None:
    reading = {
        (before, to)
        for before, to in itertools.product(Phase, Phase)
        if step(before, to=to).reads_outbox
    }
    forward = {(before, to) for before, to in itertools.product(Phase, Phase) if to > before}
    stopping = {(before, Phase.LEGACY) for before in (Phase(1), Phase(2), Phase(3))}
    assert reading == forward | stopping


def test_a_forward_step_carries_the_criterion_it_waits_for() -> None:
    facts = replace(READY, criterion=criterion())
    assert plan_step(step(Phase.SHADOW_READ, to=Phase.READ_CUTOVER), facts).criterion is not None


def test_a_step_back_waits_for_no_criterion() -> None:
    facts = replace(READY, criterion=criterion())
    assert plan_step(step(Phase.READ_CUTOVER, to=Phase.SHADOW_READ), facts).criterion is None


def test_a_wider_read_rollout_is_a_forward_step_and_a_narrower_one_is_not() -> None:
    at_40 = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(40))
    wider = Step.to(Phase.READ_CUTOVER, at_40, rollout_percent=Decimal(60))
    narrower = Step.to(Phase.READ_CUTOVER, at_40, rollout_percent=Decimal(20))
    assert (wider.forward, narrower.forward) == (True, False)


def test_a_step_keeps_the_current_shares_unless_new_ones_are_given() -> None:
    current = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(25))
    assert target_state(Phase.TIGERBEETLE_ONLY, current).read_rollout_percent == 25
    changed = target_state(Phase.READ_CUTOVER, current, rollout_percent=Decimal(50))
    assert changed.read_rollout_percent == 50


# --- the facts, gathered once ---------------------------------------------------------------


@pytest.fixture
def depth_reads(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the outbox's depth reads."""
    reads: list[int] = []
    real_depth = MirrorOutbox.depth

    def counted(outbox: MirrorOutbox) -> OutboxDepth:
        reads.append(1)
        return real_depth(outbox)

    monkeypatch.setattr(MirrorOutbox, "depth", counted)
    return reads


def test_entering_phase_4_reads_the_outbox_once_for_its_rules_and_its_criterion(
    stores: Stores, depth_reads: list[int]
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    stores.mongo.add_credit(new_key(), 100, tx())

    plan = plan_phase_change(Phase.TIGERBEETLE_ONLY, outbox=stores.outbox)

    assert len(depth_reads) == 1
    assert plan.criterion is not None and "Fallback rate" in plan.criterion.statement
    assert "The mirror applies the 1 outbox entries still pending" in plan.effects[1]


def test_a_step_back_that_keeps_dual_write_does_not_read_the_outbox(
    stores: Stores, depth_reads: list[int]
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=50)
    plan_phase_change(Phase.READ_CUTOVER, outbox=stores.outbox, rollout_percent=Decimal(25))
    plan_phase_change(Phase.SHADOW_READ, outbox=stores.outbox, shadow_percent=Decimal(5))
    plan_phase_change(Phase.DUAL_WRITE, outbox=stores.outbox)
    assert depth_reads == []


def test_mongodb_not_answering_is_a_fact_the_plan_refuses_with(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIGRATION_CRITERION_DAYS = 0  # the criterion's own refusal is not this test's

    def silent(outbox: MirrorOutbox) -> OutboxDepth:
        raise errors.StoreUnavailable("MongoDB failed: timed out")

    monkeypatch.setattr(MirrorOutbox, "depth", silent)
    enter_phase(Phase.READ_CUTOVER)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())

    plan = plan_phase_change(Phase.TIGERBEETLE_ONLY, outbox=stores.outbox)

    assert [refusal.kind for refusal in plan.refusals] == [RefusalKind.MONGO_SILENT]
