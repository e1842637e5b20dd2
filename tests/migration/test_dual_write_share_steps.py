"""Raising the dual-write share is a step of the phase plan: forward and gated like the read
rollout's (one step at a time, the match-rate criterion), taken by the command and the phase
page alike; the raise sends the entering clients' waiting writes to the mirror and backfills
their legacy wallets."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from flags.audit import apply_state
from flags.phases import Phase, current_state, state_for_phase
from migration.outbox import OutboxDepth
from migration.phase_plan import RefusalKind, Step, StepFacts, next_step, plan_step
from tests.backoffice.conftest import client_for, user_in
from tests.migration.conftest import Stores, legacy_wallet, tx
from tests.migration.share_keys import key_inside, key_outside
from tests.migration.test_mirror import entry_states

STEPS = (Decimal(1), Decimal(5), Decimal(25), Decimal(50), Decimal(100))
READY = StepFacts(
    writes_wait_s=30,
    backfill_completed=True,
    outbox=OutboxDepth(pending=0, parked=0, awaiting_backfill=0, oldest_pending_age_s=0),
    dual_write_share_steps=STEPS,
)


def at(phase: Phase, share: int) -> Any:
    return state_for_phase(
        phase,
        shadow_percent=Decimal(10),
        rollout_percent=Decimal(1),
        dual_write_percent=Decimal(share),
    )


def kinds(step: Step) -> list[RefusalKind]:
    return [refusal.kind for refusal in plan_step(step, READY).refusals]


def test_a_raise_to_the_next_share_step_is_a_forward_step_nothing_refuses() -> None:
    raise_step = Step.to(Phase.DUAL_WRITE, at(Phase.DUAL_WRITE, 1), dual_write_percent=Decimal(5))
    assert raise_step.forward and raise_step.raises_dual_write_share
    assert kinds(raise_step) == []


def test_a_raise_past_the_next_share_step_is_refused() -> None:
    skip = Step.to(Phase.DUAL_WRITE, at(Phase.DUAL_WRITE, 1), dual_write_percent=Decimal(25))
    assert kinds(skip) == [RefusalKind.SHARE_SKIPPED]
    assert "the next is 5%" in plan_step(skip, READY).refusal_message()


def test_a_raise_is_gated_by_parked_entries_like_every_step_forward() -> None:
    facts = StepFacts(
        writes_wait_s=30,
        backfill_completed=True,
        outbox=OutboxDepth(pending=0, parked=2, awaiting_backfill=0, oldest_pending_age_s=0),
        dual_write_share_steps=STEPS,
    )
    raise_step = Step.to(Phase.DUAL_WRITE, at(Phase.DUAL_WRITE, 1), dual_write_percent=Decimal(5))
    assert [r.kind for r in plan_step(raise_step, facts).refusals] == [RefusalKind.PARKED_ENTRIES]


def test_lowering_the_share_in_phase_1_is_a_step_back_never_gated() -> None:
    lower = Step.to(Phase.DUAL_WRITE, at(Phase.DUAL_WRITE, 50), dual_write_percent=Decimal(5))
    assert not lower.forward
    assert kinds(lower) == []


def test_lowering_the_share_in_phase_3_is_refused() -> None:
    lower = Step.to(Phase.READ_CUTOVER, at(Phase.READ_CUTOVER, 50), dual_write_percent=Decimal(5))
    assert kinds(lower) == [RefusalKind.SHARE_LOWERED_IN_CUTOVER]


def test_the_share_changes_with_the_phase_only_when_dual_write_starts() -> None:
    start = Step.to(Phase.DUAL_WRITE, at(Phase.LEGACY, 100), dual_write_percent=Decimal(1))
    assert kinds(start) == []
    both = Step.to(Phase.SHADOW_READ, at(Phase.DUAL_WRITE, 1), dual_write_percent=Decimal(5))
    assert RefusalKind.SHARE_WITH_PHASE in kinds(both)


def test_phase_4_with_a_partial_share_is_refused() -> None:
    enter = Step.to(Phase.TIGERBEETLE_ONLY, at(Phase.READ_CUTOVER, 50))
    assert RefusalKind.FLAGS in kinds(enter)


def test_the_step_forward_with_a_partial_share_is_its_next_share_step() -> None:
    following = next_step(at(Phase.DUAL_WRITE, 5), rollout_steps=STEPS, share_steps=STEPS)
    assert following is not None
    assert (following.phase, following.after.dual_write_percent) == (Phase.DUAL_WRITE, 25)
    at_full = next_step(at(Phase.DUAL_WRITE, 100), rollout_steps=STEPS, share_steps=STEPS)
    assert at_full is not None and at_full.phase == Phase.SHADOW_READ


def test_a_raise_waits_for_the_match_rate_criterion(stores: Stores, settings: Any) -> None:
    settings.MIGRATION_CRITERION_DAYS = 7
    apply_state(at(Phase.DUAL_WRITE, 1), actor="test")
    with pytest.raises(CommandError, match=r"criterion has not held.*match rate"):
        call_command("migration_phase", "1", "--dual-write-share", "5", stdout=StringIO())
    assert current_state().dual_write_percent == 1


@pytest.mark.usefixtures("criteria_not_awaited")
def test_the_command_starts_dual_write_at_a_share_and_raises_it(stores: Stores) -> None:
    call_command("migration_phase", "1", "--dual-write-share", "1", stdout=StringIO())
    assert current_state().dual_write_percent == 1
    out = StringIO()
    call_command("migration_phase", "1", "--dual-write-share", "5", stdout=out)
    assert current_state().dual_write_percent == 5
    assert "dual_write_share=5.0%" in out.getvalue()


@pytest.mark.usefixtures("criteria_not_awaited")
def test_raising_the_share_mirrors_and_backfills_the_wallets_it_takes_in(stores: Stores) -> None:
    call_command("migration_phase", "1", "--dual-write-share", "1", stdout=StringIO())
    born, legacy = key_inside(5, above=1), key_inside(5, above=1)
    legacy_wallet(stores, legacy, credit_minor=4_000, debit_minor=1_000)
    for key in (born, legacy):
        stores.phased.add_credit(key, 1_500, tx())
        stores.phased.subtract_credit(key, 500, tx())
    stores.mirror().drain()
    assert entry_states(stores, born) == ["outside_share"] * 2
    # Celery runs eagerly here: the raise's backfill and sweep run before the command ends.
    call_command("migration_phase", "1", "--dual-write-share", "5", stdout=StringIO())
    for key in (born, legacy):
        assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key), key
    assert entry_states(stores, born) == ["mirrored"] * 2
    assert set(entry_states(stores, legacy)) <= {"covered", "mirrored"}
    outside = key_outside(5)
    stores.phased.add_credit(outside, 100, tx())
    assert entry_states(stores, outside) == ["pending"]  # no mirror queued for it


@pytest.mark.usefixtures("criteria_not_awaited")
def test_the_phase_page_shows_the_share_and_raises_it(stores: Stores) -> None:
    product_client = client_for(user_in("Product"))
    apply_state(at(Phase.DUAL_WRITE, 1), actor="test")
    page = product_client.get("/admin/migration/phase/")
    assert 'id="dual-write-share">1.0% of clients' in page.content.decode()
    assert "a dual-write share of 5%" in page.content.decode()
    product_client.post("/admin/migration/phase/", {"phase": 1, "dual_write_percent": "5"})
    assert current_state().dual_write_percent == 5


@pytest.mark.usefixtures("criteria_not_awaited")
def test_dual_write_restarted_at_a_wider_share_takes_in_what_waited(stores: Stores) -> None:
    call_command("migration_phase", "1", "--dual-write-share", "1", stdout=StringIO())
    key = key_inside(50, above=1)
    stores.phased.add_credit(key, 1_000, tx())
    stores.mirror().drain()
    assert entry_states(stores, key) == ["outside_share"]
    call_command("migration_phase", "0", stdout=StringIO())
    call_command("migration_phase", "0", "--dual-write-share", "50", stdout=StringIO())
    call_command("migration_phase", "1", stdout=StringIO())
    stores.mirror().drain()
    assert entry_states(stores, key) == ["mirrored"]
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def test_each_share_step_says_what_it_does() -> None:
    start = Step.to(Phase.DUAL_WRITE, at(Phase.LEGACY, 100), dual_write_percent=Decimal(1))
    raise_step = Step.to(Phase.DUAL_WRITE, at(Phase.DUAL_WRITE, 1), dual_write_percent=Decimal(5))
    lower = Step.to(Phase.DUAL_WRITE, at(Phase.DUAL_WRITE, 50), dual_write_percent=Decimal(5))
    assert "Dual write starts at a share of 1% of clients" in plan_step(start, READY).effects[-1]
    assert "rises from 1% to 5%" in plan_step(raise_step, READY).effects[-1]
    assert "falls from 50% to 5%" in plan_step(lower, READY).effects[-1]


def test_the_share_and_the_read_rollout_do_not_rise_in_one_step() -> None:
    both = Step.to(
        Phase.READ_CUTOVER,
        at(Phase.READ_CUTOVER, 25),
        dual_write_percent=Decimal(50),
        rollout_percent=Decimal(5),
    )
    assert RefusalKind.SHARE_WITH_PHASE in kinds(both)
