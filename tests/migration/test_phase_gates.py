"""The gates of a forward phase step, as a specification: one phase (and one read rollout
step) at a time, never blocked going back; parked entries and open mismatches refuse any
step forward; each step's criterion, computed per day from recorded rows, must have held on
each of the last MIGRATION_CRITERION_DAYS days (days are simulated by rows dated in the past);
an override, by a holder of its permission and with a reason, lifts that refusal alone and is
audited with the figures it overrode."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management import CommandError, call_command
from django.utils import timezone

from domain.ids import WalletKey
from flags.models import FlagChange, Milestone, PhaseChange
from flags.phases import READ_ROLLOUT, InvalidPhaseChange, MigrationState, Phase, current_state
from flags.phases import state_for_phase as flags_of
from migration import criteria
from migration.criteria import StepCriterion
from migration.models import ReconciliationRun
from migration.outbox import MirrorState, OutboxDepth
from migration.phase_change import change_phase
from migration.phase_plan import (
    Override,
    RefusalKind,
    Step,
    StepFacts,
    next_step,
    override_asked,
    plan_step,
)
from staff.models import PhaseApproval
from tests.backoffice.conftest import client_for, user_in
from tests.conftest import grant
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from tests.migration.gates import (
    acknowledged,
    criteria_held,
    flags_unchanged_for,
    legacy_mismatch,
    on_day,
    read_routes,
    reconciled,
    shadow_timed,
)

STEPS = (Decimal(1), Decimal(5), Decimal(25), Decimal(50), Decimal(100))
EMPTY = OutboxDepth(pending=0, parked=0, awaiting_backfill=0, oldest_pending_age_s=0)
READY = StepFacts(writes_wait_s=30, backfill_completed=True, outbox=EMPTY, rollout_steps=STEPS)


def at(phase: Phase, *, rollout: int = 100) -> MigrationState:
    return flags_of(phase, shadow_percent=Decimal(10), rollout_percent=Decimal(rollout))


def kinds(step: Step, facts: StepFacts = READY) -> list[RefusalKind]:
    return [refusal.kind for refusal in plan_step(step, facts).refusals]


def not_held() -> StepCriterion:
    return StepCriterion(
        Phase.DUAL_WRITE, "phase 2 - shadow read", "a criterion", False, "90%", required_days=7
    )


def move(stores: Stores, phase: Phase, **options: Any) -> Any:
    return change_phase(phase, "tester", stores.mongo, stores.batches, **options)


def user_holding(*permissions: str) -> AbstractUser:
    user = get_user_model().objects.create_user(f"lead-{uuid.uuid4().hex[:6]}", is_staff=True)
    grant(user, *permissions)
    return get_user_model().objects.get(pk=user.pk)  # permissions are cached per instance


# --- one phase, one rollout step at a time; back any number -------------------------------


def test_a_skip_from_phase_1_to_3_is_refused() -> None:
    refused = plan_step(Step.to(Phase.READ_CUTOVER, at(Phase.DUAL_WRITE), rollout_percent=1), READY)
    assert [refusal.kind for refusal in refused.refusals] == [RefusalKind.PHASE_SKIPPED]
    assert "from phase 1 the next is phase 2 - shadow read" in refused.refusal_message()


@pytest.mark.parametrize("before", [Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ])
def test_every_skip_forward_is_refused_even_when_everything_else_holds(before: Phase) -> None:
    for to in Phase:
        if to > before + 1:
            assert RefusalKind.PHASE_SKIPPED in kinds(Step.to(to, at(before), rollout_percent=1))


def test_the_command_refuses_a_skip_from_phase_1_to_3(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    with pytest.raises(CommandError, match="Forward moves go one phase at a time"):
        call_command("migration_phase", "3", "--rollout", "1", stdout=StringIO())
    assert current_state().phase == Phase.DUAL_WRITE


def test_backward_from_phase_4_to_1_is_taken_at_once(stores: Stores) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    stores.phased.add_credit(key, 500, tx())  # a phase-4 write, copied back

    report = move(stores, Phase.DUAL_WRITE)

    assert (report.before, current_state().phase) == (Phase.TIGERBEETLE_ONLY, Phase.DUAL_WRITE)
    assert report.copied_back == 1
    assert stores.mongo.get_balance(key).credit_minor == 500


def test_a_step_back_is_never_gated_by_parked_entries_mismatches_or_criteria() -> None:
    blocked = replace(
        READY,
        outbox=replace(EMPTY, parked=3),
        open_mismatches=criteria.OpenMismatches(run_id=1, count=2),
        criterion=not_held(),
    )
    assert kinds(Step.to(Phase.DUAL_WRITE, at(Phase.TIGERBEETLE_ONLY)), blocked) == []
    assert (
        kinds(Step.to(Phase.READ_CUTOVER, at(Phase.READ_CUTOVER), rollout_percent=5), blocked) == []
    )


def test_the_read_rollout_rises_one_step_at_a_time() -> None:
    at_5 = at(Phase.READ_CUTOVER, rollout=5)
    assert kinds(Step.to(Phase.READ_CUTOVER, at_5, rollout_percent=25)) == []
    assert kinds(Step.to(Phase.READ_CUTOVER, at_5, rollout_percent=50)) == [
        RefusalKind.ROLLOUT_SKIPPED
    ]
    refused = plan_step(Step.to(Phase.READ_CUTOVER, at_5, rollout_percent=50), READY)
    assert "(1, 5, 25, 50, 100%): from 5% the next is 25%" in refused.refusal_message()


def test_phase_3_begins_at_most_at_the_first_rollout_step() -> None:
    assert kinds(Step.to(Phase.READ_CUTOVER, at(Phase.SHADOW_READ), rollout_percent=1)) == []
    assert kinds(Step.to(Phase.READ_CUTOVER, at(Phase.SHADOW_READ), rollout_percent=5)) == [
        RefusalKind.ROLLOUT_SKIPPED
    ]


def test_the_step_forward_from_each_phase_is_the_next_phase_or_rollout_step() -> None:
    steps = [
        next_step(state, rollout_steps=STEPS)
        for state in (
            at(Phase.DUAL_WRITE),
            at(Phase.SHADOW_READ),
            at(Phase.READ_CUTOVER, rollout=5),
        )
    ]
    assert [(step.phase, step.after.read_rollout_percent) for step in steps if step] == [
        (Phase.SHADOW_READ, 0),
        (Phase.READ_CUTOVER, 1),
        (Phase.READ_CUTOVER, 25),
    ]
    last = next_step(at(Phase.READ_CUTOVER, rollout=100), rollout_steps=STEPS)
    assert last is not None and last.phase == Phase.TIGERBEETLE_ONLY
    assert next_step(at(Phase.TIGERBEETLE_ONLY), rollout_steps=STEPS) is None


# --- parked entries and open mismatches refuse any step forward ---------------------------


def test_parked_entries_refuse_a_step_forward_and_say_what_lifts_them(
    stores: Stores, settings: Any
) -> None:
    settings.MIGRATION_CRITERION_DAYS = 0
    enter_phase(Phase.DUAL_WRITE)
    stores.phased.add_credit(new_key(), 100, tx())
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.PARKED}})

    with pytest.raises(InvalidPhaseChange, match=r"1 outbox entries are parked .* requeue them"):
        move(stores, Phase.SHADOW_READ, shadow_percent=Decimal(5))
    assert current_state().phase == Phase.DUAL_WRITE
    move(stores, Phase.LEGACY)  # a step back still goes
    assert current_state().phase == Phase.LEGACY


def test_open_mismatches_refuse_a_step_forward(stores: Stores, settings: Any) -> None:
    settings.MIGRATION_CRITERION_DAYS = 0
    enter_phase(Phase.SHADOW_READ, shadow_percent=5)
    legacy_mismatch()  # a legacy wallet nobody has decided on yet is an open case

    with pytest.raises(InvalidPhaseChange, match="1 wallet differs in the last reconciliation"):
        move(stores, Phase.READ_CUTOVER, rollout_percent=Decimal(1))
    assert current_state().phase == Phase.SHADOW_READ


def test_a_mismatch_a_recheck_resolved_or_an_acknowledged_legacy_wallet_refuses_nothing(
    stores: Stores, settings: Any
) -> None:
    settings.MIGRATION_CRITERION_DAYS = 0
    enter_phase(Phase.SHADOW_READ, shadow_percent=5)
    run = ReconciliationRun.objects.create(finished_at=timezone.now(), checked=2, mismatched=2)
    acknowledged(legacy_mismatch(run=run))
    legacy_mismatch(run=run, key=WalletKey("fixed", "USA", "USD", None))
    run.mismatches.filter(client_id="fixed").update(resolved_at=timezone.now(), resolved_by="s")

    move(stores, Phase.READ_CUTOVER, rollout_percent=Decimal(1))

    assert current_state().phase == Phase.READ_CUTOVER
    assert criteria.open_mismatches().set_aside == (WalletKey("legacy-client", "USA", "USD", None),)


def test_an_acknowledged_wallet_whose_available_balance_then_differs_is_open_again(
    stores: Stores,
) -> None:
    acknowledged(legacy_mismatch())
    later = ReconciliationRun.objects.create(finished_at=timezone.now(), checked=1, mismatched=1)
    lost_write = legacy_mismatch(run=later)
    lost_write.tb_credit_minor = 90  # a write TigerBeetle lacks, on top of the legacy excess
    lost_write.save()

    assert criteria.open_mismatches().count == 1


# --- each criterion, per day: held, missed, no data ---------------------------------------


def days_of(criterion: StepCriterion) -> dict[int, bool | None]:
    """The criterion's days by how many days ago, as held (True), missed (False) or None."""
    today = timezone.localdate()
    return {(today - day.day).days: day.met for day in criterion.days}


def test_the_match_rate_holds_on_a_day_above_99_99_percent_only(stores: Stores) -> None:
    reconciled([3], checked=10)
    reconciled([2], checked=10_000, mismatched=1)  # exactly 99.99 %: not above it
    reconciled([1], checked=100_000, mismatched=1)  # 99.999 %
    ReconciliationRun.objects.create(  # a failed run counts for nothing
        started_at=on_day(4), finished_at=on_day(4), checked=10, matched=0, error="boom"
    )

    shown = criteria.match_rate_criterion(Phase.DUAL_WRITE, next_step="2", required_days=7)

    assert {ago: days_of(shown)[ago] for ago in (4, 3, 2, 1, 0)} == {
        4: None,
        3: True,
        2: False,
        1: True,
        0: None,
    }
    assert shown.days[-2].value == "99.9990% of 100000"


def test_the_match_rate_sets_acknowledged_legacy_wallets_aside_and_lists_them(
    stores: Stores,
) -> None:
    run = ReconciliationRun.objects.create(
        started_at=on_day(1), finished_at=on_day(1), checked=10, matched=9, mismatched=1
    )
    acknowledged(legacy_mismatch(run=run))

    shown = criteria.match_rate_criterion(Phase.DUAL_WRITE, next_step="2", required_days=7)

    assert days_of(shown)[1] is True
    assert shown.days[-2].value == "100.0000% of 9, 1 set aside"
    assert shown.set_aside == ["legacy-client USA USD"]


def test_the_latency_criterion_holds_on_a_day_tigerbeetle_reads_in_under_half_the_time(
    stores: Stores,
) -> None:
    shadow_timed([3], tb_us=400, mongo_us=1000)
    shadow_timed([2], tb_us=500, mongo_us=1000)  # exactly half: not under it
    shadow_timed([1], tb_us=100, mongo_us=1000, reads=3)

    shown = criteria.latency_criterion(Phase.SHADOW_READ, next_step="3", required_days=7)

    assert {ago: days_of(shown)[ago] for ago in (4, 3, 2, 1)} == {
        4: None,
        3: True,
        2: False,
        1: True,
    }
    assert shown.days[-2].value == "10% (100 vs 1000 µs, 3 reads)"


def test_the_fallback_criterion_counts_only_days_at_the_rollout_step_all_day(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=5)
    flags_unchanged_for(9)
    read_routes([3], tigerbeetle=1000, fallback=0)
    read_routes([2], tigerbeetle=999, fallback=1)  # 0.1 %: not under it
    read_routes([1], tigerbeetle=1000)
    FlagChange.objects.filter(flag_name=READ_ROLLOUT).update(changed_at=on_day(1))

    at_5 = criteria.fallback_criterion(
        Phase.READ_CUTOVER, next_step="25", required_days=7, share_at_least=Decimal(5)
    )

    # The share went from 0 to 5 % on the day 1 day ago: that day and before do not count.
    assert {ago: days_of(at_5)[ago] for ago in (4, 3, 2, 1, 0)} == {
        4: None,
        3: None,
        2: None,
        1: None,
        0: None,
    }
    assert "rollout down to 0%, not 5% all day" in at_5.days[-2].value
    FlagChange.objects.filter(flag_name=READ_ROLLOUT).update(changed_at=on_day(9))
    at_5 = criteria.fallback_criterion(
        Phase.READ_CUTOVER, next_step="25", required_days=7, share_at_least=Decimal(5)
    )
    assert {ago: days_of(at_5)[ago] for ago in (4, 3, 2, 1)} == {
        4: None,
        3: True,
        2: False,
        1: True,
    }


def test_the_rollout_of_a_day_is_its_lowest_share_from_the_flags_audit(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=50)
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    flips = FlagChange.objects.filter(flag_name=READ_ROLLOUT).order_by("id")
    flips.filter(new_value="50").update(changed_at=on_day(3))
    flips.filter(new_value="100").update(changed_at=on_day(1))
    FlagChange.objects.exclude(flag_name=READ_ROLLOUT).update(changed_at=on_day(3))

    floor = criteria.daily_rollout_floor(criteria.days_shown(7))
    today = timezone.localdate()

    assert [floor[today - timedelta(days=ago)] for ago in (4, 3, 2, 1, 0)] == [
        0,
        0,
        50,
        50,
        100,
    ]


# --- a step forward waits until its criterion has held N days -----------------------------


def test_a_step_forward_is_refused_until_its_criterion_has_held_on_each_of_n_days(
    stores: Stores, settings: Any
) -> None:
    settings.MIGRATION_CRITERION_DAYS = 3
    enter_phase(Phase.DUAL_WRITE)
    reconciled([2, 1])

    with pytest.raises(InvalidPhaseChange, match="it held 2 of the 3 days"):
        move(stores, Phase.SHADOW_READ, shadow_percent=Decimal(5))

    reconciled([3])  # the third day, recorded as it was
    move(stores, Phase.SHADOW_READ, shadow_percent=Decimal(5))
    assert current_state().phase == Phase.SHADOW_READ


def test_a_missed_day_starts_the_count_again(stores: Stores, settings: Any) -> None:
    settings.MIGRATION_CRITERION_DAYS = 3
    enter_phase(Phase.DUAL_WRITE)
    reconciled([5, 4, 3, 1])
    reconciled([2], checked=10, mismatched=1)

    with pytest.raises(InvalidPhaseChange, match="it held 1 of the 3 days"):
        move(stores, Phase.SHADOW_READ, shadow_percent=Decimal(5))


def test_phase_4_waits_for_the_fallback_rate_at_100_percent_rollout(
    stores: Stores, settings: Any
) -> None:
    settings.MIGRATION_CRITERION_DAYS = 2
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    enter_phase(Phase.READ_CUTOVER, rollout_percent=50)
    flags_unchanged_for(5)
    read_routes([2, 1])

    with pytest.raises(InvalidPhaseChange, match="at 100% read rollout or more"):
        move(stores, Phase.TIGERBEETLE_ONLY)

    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    flags_unchanged_for(3)
    move(stores, Phase.TIGERBEETLE_ONLY)
    assert current_state().phase == Phase.TIGERBEETLE_ONLY


def test_starting_dual_write_waits_for_no_criterion(stores: Stores) -> None:
    move(stores, Phase.DUAL_WRITE)
    assert current_state().phase == Phase.DUAL_WRITE
    assert PhaseChange.objects.get().criterion["statement"].startswith("None: the plan names")


# --- the override ---------------------------------------------------------------------------


def test_an_override_lifts_the_criterion_and_nothing_else() -> None:
    blocked = replace(
        READY,
        criterion=not_held(),
        outbox=replace(EMPTY, parked=1),
        override=Override("lead", permitted=True, reason="board approved the risk"),
    )
    to_2 = Step.to(Phase.SHADOW_READ, at(Phase.DUAL_WRITE), shadow_percent=Decimal(5))
    assert kinds(to_2, blocked) == [RefusalKind.PARKED_ENTRIES]
    to_3 = Step.to(Phase.READ_CUTOVER, at(Phase.DUAL_WRITE), rollout_percent=Decimal(1))
    assert kinds(to_3, blocked) == [
        RefusalKind.PHASE_SKIPPED,
        RefusalKind.PARKED_ENTRIES,
    ]


def test_an_override_is_audited_with_the_figures_it_overrode(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    reconciled([2, 1])
    reconciled([3], checked=10, mismatched=1)
    lead = user_holding("flags.override_phase_criterion")

    move(
        stores,
        Phase.SHADOW_READ,
        shadow_percent=Decimal(5),
        override=override_asked(lead, reason="board approved: the misses were test wallets"),
    )

    change = PhaseChange.objects.get()
    assert current_state().phase == Phase.SHADOW_READ
    assert change.overridden and change.override_reason.startswith("board approved")
    figures = change.criterion
    assert figures["statement"].startswith("Balance match rate above 99.99%")
    assert (figures["met"], figures["held_days"], figures["required_days"]) == (False, 2, 7)
    assert {"day": on_day(3).date().isoformat(), "met": False, "value": "90.0000% of 10"} in (
        figures["days"]
    )


def test_the_command_takes_an_override_from_a_holder_of_the_permission(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    lead = user_holding("flags.override_phase_criterion")

    call_command(
        "migration_phase",
        "2",
        "--shadow",
        "5",
        "--actor",
        lead.username,
        "--override",
        "--reason",
        "reconciliation was down all week",
        stdout=StringIO(),
    )
    # Four eyes: an override waits for a second holder's approval (tests/backoffice/
    # test_phase_approval.py), then is taken as the lead asked it.
    assert current_state().phase == Phase.DUAL_WRITE
    second = user_holding("flags.override_phase_criterion", "flags.change_phase")
    request = str(PhaseApproval.objects.get().pk)
    call_command(
        "migration_phase", "--approve", request, "--actor", second.username, "--why", "seen"
    )

    change = PhaseChange.objects.get()
    assert (change.actor, change.overridden) == (lead.username, True)
    assert change.override_reason == "reconciliation was down all week"
    assert change.approved_by == second.username


def test_the_command_refuses_an_override_by_someone_without_the_permission(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    product = user_holding("flags.change_phase")

    with pytest.raises(CommandError, match=f"{product.username} does not hold it"):
        call_command(
            "migration_phase",
            "2",
            "--shadow",
            "5",
            "--actor",
            product.username,
            "--override",
            "--reason",
            "I would like to go on",
            stdout=StringIO(),
        )
    assert current_state().phase == Phase.DUAL_WRITE
    assert PhaseChange.objects.get().refused


def test_the_command_refuses_an_override_without_a_named_holder_or_a_reason(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    lead = user_holding("flags.override_phase_criterion")

    with pytest.raises(CommandError, match="no such person was named"):
        call_command(
            "migration_phase", "2", "--shadow", "5", "--override", "--reason", "some reason",
            stdout=StringIO(),
        )  # fmt: skip
    with pytest.raises(CommandError, match="An override needs a written reason"):
        call_command(
            "migration_phase", "2", "--shadow", "5", "--actor", lead.username, "--override",
            stdout=StringIO(),
        )  # fmt: skip
    with pytest.raises(CommandError, match="--reason goes with --override"):
        call_command("migration_phase", "2", "--shadow", "5", "--reason", "x", stdout=StringIO())
    assert current_state().phase == Phase.DUAL_WRITE


def test_the_page_takes_an_override_only_from_a_holder_of_the_permission(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    product = user_in("Product")
    fields = {
        "phase": 2,
        "shadow_percent": "5",
        "override": "on",
        "override_reason": "go on now, approved",
    }

    refused = client_for(product).post("/admin/migration/phase/", fields).content.decode()
    assert "does not hold it" in refused and current_state().phase == Phase.DUAL_WRITE
    assert 'id="override-fields"' not in refused  # the fields are shown only to a holder

    grant(product, "flags.override_phase_criterion")
    lead = get_user_model().objects.get(pk=product.pk)
    page = client_for(lead).get("/admin/migration/phase/").content.decode()
    assert 'id="override-fields"' in page
    assert "You hold the override permission" in page
    filed = client_for(lead).post("/admin/migration/phase/", fields, follow=True)
    assert "because it overrides its criterion" in filed.content.decode()
    assert current_state().phase == Phase.DUAL_WRITE
    # Four eyes: a second holder approves it (tests/backoffice/test_phase_approval.py).
    second = user_in("Product")
    grant(second, "flags.override_phase_criterion")
    client_for(second).post(
        f"/admin/staff/phaseapproval/{PhaseApproval.objects.get().pk}/decide/",
        {"reason": "seen the figures", "_approve": "1"},
    )
    assert current_state().phase == Phase.SHADOW_READ
    taken = client_for(lead).get("/admin/migration/phase/")
    audit = taken.content.decode().split('id="flag-audit"')[1]
    assert "override of the criterion: “go on now, approved”" in audit
    assert "held 0 of 7 days" in audit


def test_criteria_held_lets_every_step_forward_through(stores: Stores) -> None:
    """The helper the other tests use does what it says (so they test what they claim)."""
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    enter_phase(Phase.DUAL_WRITE)
    criteria_held()
    move(stores, Phase.SHADOW_READ, shadow_percent=Decimal(5))
    criteria_held()
    move(stores, Phase.READ_CUTOVER, rollout_percent=Decimal(1))
    assert current_state().phase == Phase.READ_CUTOVER
