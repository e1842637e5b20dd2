"""Holds across the migration phases: served by MongoDB in phases 0-3 (mirrored into TigerBeetle
in 1-3: tests/migration/test_holds_in_dual_write.py) and by TigerBeetle in phase 4
(docs/holds.md); every hold event of phase 0 is logged as the other writes are and reaches
TigerBeetle through the mirror of phase 1 (or a legacy wallet's import)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.utils import timezone

from domain import errors
from domain.holds import HoldState
from flags.models import Milestone
from flags.phases import Phase, current_state
from ledger.service import WalletService
from migration.backfill import Backfill
from migration.phase_change import change_phase
from migration.phase_plan import plan_phase_change
from registry.models import WalletHold
from tests.api.test_hold_api import HOLD_PERMISSIONS
from tests.conftest import token_api_client
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

HOUR_S = 3600


def hold_id() -> str:
    return f"hold-{uuid.uuid4().hex}"


def test_in_phase_0_holds_are_served_by_mongodb(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())

    stores.phased.place_hold(key, 400, hold_id(), timeout_s=HOUR_S)

    assert stores.mongo.get_balance(key).held_minor == 400
    assert stores.phased.get_balance(key).credit_minor == 600


@pytest.mark.usefixtures("criteria_not_awaited")
def test_in_phase_4_holds_are_served_by_tigerbeetle(stores: Stores) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()

    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    stores.phased.capture_hold(placed, amount_minor=150)

    assert stores.tigerbeetle.get_balance(key).fields_minor() == (850, 150, 1_000)
    assert stores.phased.get_hold(placed).state == HoldState.CAPTURED


def test_a_capture_in_phase_0_keeps_the_log_complete_and_reaches_tigerbeetle_through_the_mirror(
    stores: Stores,
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    stores.phased.capture_hold(placed, amount_minor=250)
    stores.phased.subtract_credit(key, 100, tx())
    enter_phase(Phase.DUAL_WRITE)

    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    stores.mirror().drain()

    assert (report.imported, report.log_complete) == (0, 1)  # born with the log, still whole
    expected = (650, 350, 1_000)
    assert stores.mongo.get_balance(key).fields_minor() == expected
    assert stores.tigerbeetle.get_balance(key).fields_minor() == expected


def test_the_mirror_carries_phase_0_holds_as_pending_transfers_with_what_is_left_of_the_expiry(
    stores: Stores,
) -> None:
    """The timeout is what is left of MongoDB's expiry, so in phase 4 the hold expires by
    itself; the post or void the mirror sends is an ordinary one, never imported (TigerBeetle
    0.17.9 crashes on an imported post or void of a pending transfer with a timeout)."""
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    captured, released = hold_id(), hold_id()
    stores.phased.place_hold(key, 400, captured, timeout_s=HOUR_S)
    stores.phased.place_hold(key, 100, released, timeout_s=HOUR_S)
    stores.phased.capture_hold(captured, amount_minor=250)
    stores.phased.release_hold(released)
    enter_phase(Phase.DUAL_WRITE)

    stores.mirror().drain()

    ids = stores.runtime.scope.ids
    pending = stores.batches.lookup_transfers(
        [ids.hold_transfer_id(captured), ids.hold_transfer_id(released)]
    )
    assert [(t.amount, t.code) for t in pending] == [(400, 7), (100, 7)]
    assert all(HOUR_S - 60 <= t.timeout <= HOUR_S for t in pending)
    rows = {row.hold_id: row for row in WalletHold.objects.filter(hold_id__in=[captured, released])}
    assert (rows[captured].state, rows[captured].captured_minor) == ("captured", 250)
    assert not rows[captured].needs_copy_back  # MongoDB took the capture
    assert rows[released].state == "released"
    expected = (750, 250, 1_000)
    assert stores.tigerbeetle.get_balance(key).fields_minor() == expected
    assert stores.tigerbeetle.get_balance(key).held_minor == 0


@pytest.mark.parametrize("expires_in_s", [0, -1, 30 * 24 * 3600 + 1, True, "60"])
def test_a_hold_lives_a_whole_number_of_seconds_up_to_thirty_days(
    stores: Stores, expires_in_s: object
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    service = WalletService(stores.phased)

    with pytest.raises(errors.ValidationFailed) as refused:
        service.place_hold(
            client_id=key.client_id,
            country=key.country,
            currency=key.currency,
            amount="1.00",
            hold_id=hold_id(),
            expires_in_s=expires_in_s,  # type: ignore[arg-type]  # what a client may send
        )

    assert refused.value.details == {"field": "expires_in_s"}
    assert stores.mongo.get_balance(key).held_minor == 0


def test_through_the_api_a_hold_in_phase_1_is_placed_and_reads_as_held(stores: Stores) -> None:
    api = token_api_client(HOLD_PERMISSIONS)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    enter_phase(Phase.DUAL_WRITE)

    response = api.post(
        f"/api/clients/{key.client_id}/wallets/USA/USD/holds",
        {"hold_id": hold_id(), "amount": "1.00", "expires_in_s": 60},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert stores.mongo.get_balance(key).held_minor == 100
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_dual_write_starts_with_open_holds_on_wallets_born_with_the_log_and_carries_them(
    stores: Stores,
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 400, hold_id(), timeout_s=HOUR_S)

    change_phase(Phase.DUAL_WRITE, "tester", stores.mongo, stores.batches)
    stores.mirror().drain()

    assert current_state().phase == Phase.DUAL_WRITE
    assert stores.tigerbeetle.get_balance(key).held_minor == 400
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_dual_write_starts_while_a_legacy_wallet_not_imported_holds_an_open_hold(
    stores: Stores,
) -> None:
    """The backfill carries the hold (tests/migration/test_backfill_holds.py): no gate."""
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.phased.place_hold(key, 400, hold_id(), timeout_s=HOUR_S)

    change_phase(Phase.DUAL_WRITE, "tester", stores.mongo, stores.batches)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    stores.mirror().drain()

    assert current_state().phase == Phase.DUAL_WRITE
    assert stores.tigerbeetle.get_balance(key).held_minor == 400
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def test_a_legacy_wallets_phase_0_holds_are_in_its_opening_balance_after_the_backfill(
    stores: Stores,
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=5_000, debit_minor=500)
    captured, released = hold_id(), hold_id()
    stores.phased.place_hold(key, 400, captured, timeout_s=HOUR_S)
    stores.phased.place_hold(key, 100, released, timeout_s=HOUR_S)
    stores.phased.capture_hold(captured, amount_minor=300)
    stores.phased.release_hold(released)
    enter_phase(Phase.DUAL_WRITE)

    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    mirrored = stores.mirror().drain()

    assert report.imported == 1 and mirrored.parked == 0
    expected = (4_700, 800, 5_500)
    assert stores.mongo.get_balance(key).fields_minor() == expected
    assert stores.tigerbeetle.get_balance(key).fields_minor() == expected


def test_a_legacy_wallets_phase_0_holds_are_covered_by_its_import(stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    captured, released = hold_id(), hold_id()
    stores.phased.place_hold(key, 400, captured, timeout_s=HOUR_S)
    stores.phased.place_hold(key, 100, released, timeout_s=HOUR_S)
    stores.phased.capture_hold(captured, amount_minor=250)
    stores.phased.release_hold(released)
    enter_phase(Phase.DUAL_WRITE)
    report = stores.mirror().drain()  # the events wait for the import

    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    after = stores.mirror().drain()

    assert report.parked == after.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (750, 250, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert not stores.outbox.has_unmirrored(key)


def test_an_expired_hold_not_yet_marked_on_mongodb_does_not_hold_dual_write_back(
    stores: Stores,
) -> None:
    """Carried as a pending transfer whose timeout is what is left of MongoDB's expiry (1 s at
    least): it frees its money in TigerBeetle by itself, and MongoDB's expiry, once marked, is
    mirrored as a void the cluster answers pending_transfer_expired (nothing parked)."""
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 400, hold_id(), timeout_s=1)
    time.sleep(1.05)

    change_phase(Phase.DUAL_WRITE, "tester", stores.mongo, stores.batches)
    stores.mirror().drain()
    time.sleep(1.05)  # the cluster's timeout (whole seconds) passes
    assert stores.mongo.sweep_expired_holds() == 1
    drained = stores.mirror().drain()

    assert drained.parked == 0
    assert stores.tigerbeetle.get_balance(key).held_minor == 0
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_stepping_back_from_phase_4_says_that_open_holds_are_copied_back(
    stores: Stores,
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 400, hold_id(), timeout_s=HOUR_S)

    plan = plan_phase_change(Phase.READ_CUTOVER, outbox=stores.outbox)

    assert plan.refusals == ()
    assert any(
        effect.startswith("1 holds open on TigerBeetle are copied back") for effect in plan.effects
    )


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_hold_open_when_stepping_back_from_phase_4_is_carried_back_to_mongodb(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    stores.phased.place_hold(key, 400, hold_id(), timeout_s=HOUR_S)

    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_balance(key).held_minor == 400
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_hold_captured_in_phase_4_is_in_mongodb_after_stepping_back(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    captured, released = hold_id(), hold_id()
    stores.phased.place_hold(key, 400, captured, timeout_s=HOUR_S, made_by="payments")
    stores.phased.place_hold(key, 100, released, timeout_s=HOUR_S)
    stores.phased.capture_hold(captured, amount_minor=250, made_by="payments")
    stores.phased.release_hold(released)
    stores.phased.subtract_credit(key, 50, tx())

    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_balance(key).fields_minor() == (700, 300, 1_000)
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)
    copied = stores.mongo.get_hold(captured)
    assert (copied.state, copied.captured_minor, copied.resolved_by) == (
        HoldState.CAPTURED,
        250,
        "payments",
    )


def test_through_the_api_a_legacy_wallet_awaiting_its_import_takes_a_hold_in_phase_3(
    stores: Stores,
) -> None:
    api = token_api_client(HOLD_PERMISSIONS)
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    enter_phase(Phase.READ_CUTOVER)

    response = api.post(
        f"/api/clients/{key.client_id}/wallets/USA/USD/holds",
        {"hold_id": hold_id(), "amount": "1.00", "expires_in_s": 60},
        format="json",
    )
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    stores.mirror().drain()

    assert response.status_code == 201, response.json()
    assert stores.tigerbeetle.get_balance(key).held_minor == 100
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
