"""Phase 4's entry builds on a clean reconciliation run of every wallet made before the pause,
and compares inside the pause only the wallets changed since (migration.entry_check)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from domain.ids import WalletKey
from flags.models import FlagChange, Milestone
from flags.phases import WRITES_PAUSED, InvalidPhaseChange, Phase, current_state
from migration.entry_check import changed_wallets
from migration.models import ReconciliationRun
from migration.outbox import MirrorState
from migration.phase_change import PhaseChangeReport, change_phase
from migration.phase_plan import RefusalKind, plan_phase_change
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase, new_key, tx

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")
HOUR_S = 3600
WALLETS = 12
# Fewer than the wallets: the pause may not compare them all, only what changed.
WALLETS_MAX = 4


@pytest.fixture
def entry_bound(settings: Any) -> None:
    settings.PHASE4_ENTRY_WALLETS_MAX = WALLETS_MAX
    # The test's writes and its run share one clock: no margin is needed before the mark.
    settings.PHASE4_ENTRY_MARK_MARGIN_S = 0


def wallets_in_phase_3(stores: Stores) -> list[WalletKey]:
    """WALLETS wallets credited (and mirrored) in phase 3, the backfill done."""
    enter_phase(Phase.READ_CUTOVER)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    keys = [new_key() for _ in range(WALLETS)]
    for key in keys:
        stores.phased.add_credit(key, 1_000, tx())
    return keys


def full_run(stores: Stores) -> ReconciliationRun:
    run = stores.runtime.reconciliation().run(triggered_by="test")
    assert (run.compared_every_wallet, run.checked, run.mismatched) == (True, WALLETS, 0)
    return run


def entry_run() -> ReconciliationRun:
    run = ReconciliationRun.objects.filter(triggered_by__startswith="entering phase 4").get()
    assert not run.compared_every_wallet
    return run


def move_to_phase_4(stores: Stores) -> PhaseChangeReport:
    return change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)


@pytest.mark.usefixtures("entry_bound")
def test_the_pause_compares_only_the_wallets_changed_since_the_full_run(stores: Stores) -> None:
    keys = wallets_in_phase_3(stores)
    full_run(stores)
    stores.mongo.add_credit(keys[0], 50, tx())  # after the run, not mirrored yet
    stores.phased.subtract_credit(keys[1], 30, tx())
    born = new_key()
    stores.phased.add_credit(born, 70, tx())  # a wallet created since the run

    report = move_to_phase_4(stores)

    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    assert report.mirrored == 1  # drained in the pause, then compared
    run = entry_run()
    assert (run.wallets_total, run.checked, run.matched, run.mismatched) == (3, 3, 3, 0)
    assert stores.tigerbeetle.get_balance(keys[0]).credit_minor == 1_050
    assert_stores_agree(stores, [keys[0], keys[1], born])


@pytest.mark.usefixtures("entry_bound")
def test_a_difference_found_in_the_pause_refuses_phase_4_and_writes_resume(
    stores: Stores,
) -> None:
    keys = wallets_in_phase_3(stores)
    full_run(stores)
    credit = tx()
    stores.mongo.add_credit(keys[2], 40, credit)
    # The mirror lost it: marked mirrored, never applied to TigerBeetle.
    stores.mongo.database.log().update_one(
        {"_id": credit}, {"$set": {"mirror_state": MirrorState.MIRRORED}}
    )

    with pytest.raises(InvalidPhaseChange, match=rf"{keys[2].client_id} .*\(balance differs\)"):
        move_to_phase_4(stores)

    state = current_state()
    assert (state.phase, state.writes_paused) == (Phase.READ_CUTOVER, False)
    assert FlagChange.objects.filter(flag_name=WRITES_PAUSED).count() == 2  # paused, resumed
    run = entry_run()
    assert (run.checked, run.mismatched) == (1, 1)
    stores.phased.add_credit(keys[3], 1, tx())  # not paused


@pytest.mark.usefixtures("entry_bound")
def test_without_a_full_run_phase_4_is_refused_before_the_pause(stores: Stores) -> None:
    wallets_in_phase_3(stores)

    with pytest.raises(InvalidPhaseChange, match="no reconciliation run has compared every"):
        move_to_phase_4(stores)

    assert current_state().phase == Phase.READ_CUTOVER
    assert not FlagChange.objects.filter(flag_name=WRITES_PAUSED).exists()


@pytest.mark.usefixtures("entry_bound")
def test_a_full_run_that_found_a_difference_is_no_basis(stores: Stores) -> None:
    keys = wallets_in_phase_3(stores)
    stores.mongo.add_credit(keys[0], 40, tx())
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.MIRRORED}})
    run = stores.runtime.reconciliation().run(triggered_by="test")
    assert run.compared_every_wallet and run.mismatched == 1
    # Support resolved the case (the plan refuses while one is open); the run stays unclean.
    run.mismatches.update(resolved_at=timezone.now(), resolved_by="support")

    with pytest.raises(InvalidPhaseChange, match=rf"run {run.pk}\) was not clean: 1 wallet"):
        move_to_phase_4(stores)

    assert not FlagChange.objects.filter(flag_name=WRITES_PAUSED).exists()


@pytest.mark.usefixtures("entry_bound")
def test_a_full_run_older_than_the_limit_is_no_basis(stores: Stores, settings: Any) -> None:
    wallets_in_phase_3(stores)
    full_run(stores)
    settings.PHASE4_ENTRY_RUN_MAX_AGE_S = 0

    with pytest.raises(InvalidPhaseChange, match="more than PHASE4_ENTRY_RUN_MAX_AGE_S"):
        move_to_phase_4(stores)


def catch_up_runs() -> list[ReconciliationRun]:
    return list(ReconciliationRun.objects.filter(triggered_by__startswith="before phase 4's pause"))


@pytest.mark.usefixtures("entry_bound")
def test_more_changed_wallets_than_the_bound_are_compared_before_the_pause(
    stores: Stores,
) -> None:
    keys = wallets_in_phase_3(stores)
    full = full_run(stores)
    for key in keys[: WALLETS_MAX + 1]:
        stores.phased.add_credit(key, 1, tx())

    move_to_phase_4(stores)

    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    (before_the_pause,) = catch_up_runs()
    assert before_the_pause.note.endswith(f"the wallets changed since run {full.pk}")
    assert (before_the_pause.checked, before_the_pause.matched) == (
        WALLETS_MAX + 1,
        WALLETS_MAX + 1,
    )
    in_the_pause = entry_run()
    assert in_the_pause.note.endswith(f"the wallets changed since run {before_the_pause.pk}")
    assert in_the_pause.checked == 0  # nothing changed since the pass before the pause


@pytest.mark.usefixtures("entry_bound")
def test_a_difference_found_before_the_pause_refuses_phase_4_without_pausing(
    stores: Stores,
) -> None:
    keys = wallets_in_phase_3(stores)
    full_run(stores)
    for key in keys[: WALLETS_MAX + 1]:
        stores.phased.add_credit(key, 1, tx())
    lost = tx()
    stores.mongo.add_credit(keys[0], 40, lost)
    # The mirror lost it: marked mirrored, never applied to TigerBeetle.
    stores.mongo.database.log().update_one(
        {"_id": lost}, {"$set": {"mirror_state": MirrorState.MIRRORED}}
    )

    with pytest.raises(InvalidPhaseChange, match=rf"{keys[0].client_id} .*\(balance differs\)"):
        move_to_phase_4(stores)

    assert current_state().phase == Phase.READ_CUTOVER
    assert not FlagChange.objects.filter(flag_name=WRITES_PAUSED).exists()
    (before_the_pause,) = catch_up_runs()
    assert before_the_pause.mismatched == 1


@pytest.mark.usefixtures("entry_bound")
def test_a_wallet_whose_open_hold_falls_due_within_the_margin_counts_as_changed(
    stores: Stores, settings: Any
) -> None:
    keys = wallets_in_phase_3(stores)
    stores.phased.place_hold(keys[4], 400, f"hold-{tx()}", timeout_s=60)
    run = full_run(stores)
    settings.PHASE4_ENTRY_MARK_MARGIN_S = 120  # the cluster's clock may run that far ahead

    changed = changed_wallets(
        stores.mongo.database, since=run.started_at, run_started=run.started_at, limit=WALLETS
    )

    assert changed == {keys[4]}  # it may expire in either store with no write


@pytest.mark.usefixtures("entry_bound")
def test_a_wallet_whose_open_hold_falls_due_after_the_pause_is_not_compared_in_it(
    stores: Stores,
) -> None:
    keys = wallets_in_phase_3(stores)
    stores.phased.place_hold(keys[4], 400, f"hold-{tx()}", timeout_s=HOUR_S)
    full_run(stores)

    move_to_phase_4(stores)

    # Open at the run and still open, in both stores: nothing to compare again.
    assert (entry_run().checked, entry_run().mismatched) == (0, 0)
    assert stores.tigerbeetle.get_balance(keys[4]).held_minor == 400


def test_a_small_wallet_base_is_compared_whole_in_the_pause_without_an_earlier_run(
    stores: Stores,
) -> None:
    wallets_in_phase_3(stores)  # fewer than the default bound

    move_to_phase_4(stores)

    whole = ReconciliationRun.objects.get(triggered_by__startswith="entering phase 4")
    assert (whole.compared_every_wallet, whole.checked) == (True, WALLETS)


@pytest.mark.usefixtures("entry_bound")
def test_writes_within_the_margin_before_the_run_count_as_changed(
    stores: Stores, settings: Any
) -> None:
    keys = wallets_in_phase_3(stores)
    run = full_run(stores)
    # A write whose transaction began before the run and committed after it read the wallet
    # carries a time before the run's start: the margin takes such writes in.
    settings.PHASE4_ENTRY_MARK_MARGIN_S = HOUR_S

    with pytest.raises(InvalidPhaseChange, match=rf"more than {WALLETS_MAX} wallets changed"):
        move_to_phase_4(stores)

    since = run.started_at - timedelta(seconds=HOUR_S)
    changed = changed_wallets(
        stores.mongo.database, since=since, run_started=run.started_at, limit=WALLETS + 1
    )
    assert changed == set(keys)


@pytest.mark.usefixtures("entry_bound")
def test_the_plan_of_phase_4_names_the_missing_entry_basis_before_anyone_confirms(
    stores: Stores,
) -> None:
    wallets_in_phase_3(stores)

    plan = plan_phase_change(Phase.TIGERBEETLE_ONLY, outbox=stores.runtime.outbox)

    refusals = [r for r in plan.refusals if r.kind == RefusalKind.NO_ENTRY_BASIS]
    assert len(refusals) == 1
    assert "no reconciliation run has compared every wallet" in refusals[0].reason


@pytest.mark.usefixtures("entry_bound")
def test_a_clean_recent_full_run_lifts_the_plans_entry_refusal(stores: Stores) -> None:
    wallets_in_phase_3(stores)
    full_run(stores)

    plan = plan_phase_change(Phase.TIGERBEETLE_ONLY, outbox=stores.runtime.outbox)

    assert RefusalKind.NO_ENTRY_BASIS not in {refusal.kind for refusal in plan.refusals}
