"""Holds in phases 1-3 (issue 23, item 1, step 3): MongoDB is authoritative, and each operation
of a hold is an event in its transaction log that the mirror carries into TigerBeetle as
ordinary transfers (migration/hold_mirror.py, docs/holds.md "Across the migration"). After the
mirror caught up, both stores answer the same balance, `held` included."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from tigerbeetle import Transfer, TransferFlags

from domain import errors
from domain.history import HistoryQuery, PointKind
from domain.holds import HoldState
from flags.models import Milestone
from flags.phases import Phase
from migration.models import ShadowComparison
from migration.phase_change import change_phase
from migration.shadow import compare_shadow_read
from registry.models import WalletHold
from tests.concurrency import run_concurrently
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

HOUR_S = 3600
DUAL_WRITE_PHASES = [Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.READ_CUTOVER]


def hold_id() -> str:
    return f"hold-{uuid.uuid4().hex}"


@pytest.fixture
def sent(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Transfer]]:
    """Every transfer the mirror sends TigerBeetle, in order (a spy on its batch port)."""
    transfers: list[Transfer] = []
    backend = stores.tigerbeetle.backend
    create = backend.create_transfers

    def spy(batch: list[Transfer]) -> object:
        transfers.extend(batch)
        return create(batch)

    monkeypatch.setattr(backend, "create_transfers", spy)
    yield transfers


def _move_mongo_expiry(stores: Stores, placed: str, expires_at: datetime) -> None:
    """MongoDB's expiry of a hold set apart from the cluster's (a clock the two stores do not
    share): the only way a test reaches either side of the race without waiting an hour."""
    stores.mongo.database.holds().update_one({"_id": placed}, {"$set": {"expires_at": expires_at}})


@pytest.mark.parametrize("phase", DUAL_WRITE_PHASES)
def test_in_dual_write_a_hold_is_served_by_mongodb_and_mirrored_with_its_held_amount(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()

    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    stores.mirror().drain()

    assert stores.mongo.get_balance(key).fields_minor() == (600, 0, 1_000)
    assert stores.mongo.get_balance(key).held_minor == 400
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert stores.phased.get_hold(placed).state == HoldState.OPEN


def test_a_capture_in_dual_write_is_mirrored_as_the_post_of_the_pending_transfer(
    stores: Stores, sent: list[Transfer]
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)

    stores.phased.capture_hold(placed, amount_minor=150, made_by="payments")
    stores.mirror().drain()

    assert stores.tigerbeetle.get_balance(key).fields_minor() == (850, 150, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert [t.flags for t in sent[-2:]] == [
        TransferFlags.PENDING,
        TransferFlags.POST_PENDING_TRANSFER,
    ]
    row = WalletHold.objects.get(hold_id=placed)
    assert (row.state, row.captured_minor, row.needs_copy_back) == ("captured", 150, False)


def test_a_release_in_dual_write_is_mirrored_and_frees_the_money_in_both_stores(
    stores: Stores,
) -> None:
    enter_phase(Phase.SHADOW_READ)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 1_000, placed, timeout_s=HOUR_S)

    stores.phased.release_hold(placed)
    stores.phased.subtract_credit(key, 1_000, tx())
    report = stores.mirror().drain()

    assert report.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (0, 1_000, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def test_an_expiry_on_mongodb_is_mirrored_before_the_debit_that_spends_the_freed_money(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 1_000, placed, timeout_s=HOUR_S)  # an hour on the cluster
    _move_mongo_expiry(stores, placed, datetime.now(UTC) - timedelta(seconds=1))

    stores.phased.subtract_credit(key, 1_000, tx())  # MongoDB expires the hold first
    report = stores.mirror().drain()

    assert report.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (0, 1_000, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert WalletHold.objects.get(hold_id=placed).state == WalletHold.State.EXPIRED


def test_a_capture_mirrored_after_the_cluster_expired_the_hold_is_posted_as_a_plain_debit(
    stores: Stores, sent: list[Transfer]
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=1)  # mirrored with 1 s left
    _move_mongo_expiry(stores, placed, datetime.now(UTC) + timedelta(hours=1))
    time.sleep(2.2)  # the cluster's timeout passes; MongoDB's does not

    stores.phased.capture_hold(placed, amount_minor=300)
    report = stores.mirror().drain()

    assert report.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (700, 300, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert sent[-1].flags == TransferFlags.NONE and sent[-1].amount == 300


def test_a_late_capture_is_the_same_capture_point_in_both_stores_histories(
    stores: Stores,
) -> None:
    """TigerBeetle's plain debit for it is named by the hold registry (its resolution id), so
    its point is the capture MongoDB logged, with no expiry beside it; a cursor names it too."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=1)
    _move_mongo_expiry(stores, placed, datetime.now(UTC) + timedelta(hours=1))
    time.sleep(2.2)
    stores.phased.capture_hold(placed, amount_minor=300)
    stores.mirror().drain()

    whole = stores.tigerbeetle.history(HistoryQuery(key=key))
    assert whole == stores.mongo.history(HistoryQuery(key=key))
    assert [(p.kind, p.hold_id) for p in whole.points[:1]] == [(PointKind.CAPTURE, placed)]
    rest = stores.tigerbeetle.history(HistoryQuery(key=key, after=whole.points[0].ref()))
    assert rest.points == whole.points[1:]


def test_an_expiry_the_clusters_timeout_reached_first_is_the_same_point_in_both_histories(
    stores: Stores,
) -> None:
    """MongoDB's expiry, mirrored after the cluster's timeout voided the pending transfer
    (`pending_transfer_expired`): TigerBeetle's computed expiry point is timed at MongoDB's."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=1)
    stores.mirror().drain()
    time.sleep(2.2)  # both expiries pass; the cluster's voids the pending transfer
    stores.mongo.sweep_expired_holds()
    report = stores.mirror().drain()

    whole = stores.tigerbeetle.history(HistoryQuery(key=key))
    assert report.parked == 0
    assert whole == stores.mongo.history(HistoryQuery(key=key))
    assert [(p.kind, p.hold_id) for p in whole.points[:1]] == [(PointKind.EXPIRE, placed)]


def test_the_mirror_never_sends_an_imported_transfer_for_a_hold(
    stores: Stores, sent: list[Transfer]
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    captured, released, expired = hold_id(), hold_id(), hold_id()
    for placed in (captured, released, expired):
        stores.phased.place_hold(key, 100, placed, timeout_s=HOUR_S)
    stores.phased.capture_hold(captured)
    stores.phased.release_hold(released)
    _move_mongo_expiry(stores, expired, datetime.now(UTC) - timedelta(seconds=1))
    stores.phased.add_credit(key, 1, tx())  # expires it on MongoDB

    stores.mirror().drain()

    assert len(sent) >= 6
    assert not any(transfer.flags & TransferFlags.IMPORTED for transfer in sent)


def test_after_its_import_a_legacy_wallet_takes_holds_in_dual_write(stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    enter_phase(Phase.DUAL_WRITE)
    stores.runtime.backfill().run(progress=False)

    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    stores.phased.capture_hold(placed, amount_minor=100)
    stores.mirror().drain()

    assert stores.tigerbeetle.get_balance(key).fields_minor() == (900, 100, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def _into_phase_4(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    if not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists():
        Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)


@pytest.mark.usefixtures("criteria_not_awaited")
@pytest.mark.parametrize("phase", [Phase.LEGACY, *DUAL_WRITE_PHASES])
def test_a_hold_placed_in_phases_0_to_3_is_captured_in_phase_4_and_agrees_after_stepping_back(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S, made_by="payments")
    _into_phase_4(stores)

    stores.phased.capture_hold(placed, amount_minor=250, made_by="payments")
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_balance(key).fields_minor() == (750, 250, 1_000)
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)
    copied = stores.phased.get_hold(placed)
    assert (copied.state, copied.captured_minor) == (HoldState.CAPTURED, 250)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_dual_write_hold_released_in_phase_4_is_released_in_mongodb_after_stepping_back(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    _into_phase_4(stores)

    stores.phased.release_hold(placed)
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_balance(key).held_minor == 0
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)
    assert stores.phased.get_hold(placed).state == HoldState.RELEASED


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_phase_4_hold_copied_back_is_captured_in_phase_3_by_an_ordinary_post(
    stores: Stores, sent: list[Transfer]
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    _into_phase_4(stores)
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)
    cluster_expiry = WalletHold.objects.get(hold_id=placed).expires_at

    stores.phased.capture_hold(placed, amount_minor=300)
    stores.mirror().drain()

    assert stores.mongo.get_hold(placed).expires_at == cluster_expiry
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (700, 300, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert sent[-1].flags == TransferFlags.POST_PENDING_TRANSFER  # not imported


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_phase_4_hold_copied_back_is_released_in_phase_4_again(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    _into_phase_4(stores)
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)

    stores.phased.release_hold(placed)
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_balance(key).fields_minor() == (1_000, 0, 1_000)
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)
    assert stores.phased.get_hold(placed).state == HoldState.RELEASED


@pytest.mark.usefixtures("criteria_not_awaited")
def test_holds_copied_back_from_phase_4_are_points_of_mongodbs_history_and_never_mirrored_again(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    released = hold_id()
    stores.phased.place_hold(key, 100, released, timeout_s=HOUR_S)
    _into_phase_4(stores)
    still_open = hold_id()
    stores.phased.place_hold(key, 400, still_open, timeout_s=HOUR_S)
    stores.phased.release_hold(released)

    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    points = stores.mongo.history(HistoryQuery(key=key)).points
    assert {(p.kind, p.hold_id) for p in points[:2]} == {
        (PointKind.RELEASE, released),
        (PointKind.HOLD, still_open),
    }
    assert points[0].balance == stores.tigerbeetle.get_balance(key)
    assert not stores.outbox.has_unmirrored(key)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_the_whole_walk_sends_no_imported_post_or_void_of_a_pending_transfer(
    stores: Stores, sent: list[Transfer]
) -> None:
    legacy, born = new_key(), new_key()
    legacy_wallet(stores, legacy, credit_minor=1_000, debit_minor=0)
    stores.phased.add_credit(born, 1_000, tx())
    phase_0 = hold_id()
    stores.phased.place_hold(born, 100, phase_0, timeout_s=HOUR_S)
    enter_phase(Phase.DUAL_WRITE)
    stores.runtime.backfill().run(progress=False)
    phase_1 = hold_id()
    stores.phased.place_hold(legacy, 200, phase_1, timeout_s=HOUR_S)
    _into_phase_4(stores)
    phase_4 = hold_id()
    stores.phased.place_hold(legacy, 300, phase_4, timeout_s=HOUR_S)
    stores.phased.capture_hold(phase_0)
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)
    stores.phased.capture_hold(phase_1)
    stores.phased.release_hold(phase_4)
    stores.mirror().drain()

    resolving = TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER
    imported = [t for t in sent if t.flags & TransferFlags.IMPORTED]
    assert imported  # the backfill's opening balance
    assert not [t for t in imported if t.flags & (resolving | TransferFlags.PENDING)]
    for key in (legacy, born):
        assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


@pytest.mark.parametrize("phase", DUAL_WRITE_PHASES)
def test_racing_holds_and_debits_in_dual_write_never_overdraw_and_both_stores_agree(
    committed_stores: Stores, phase: Phase
) -> None:
    stores = committed_stores
    enter_phase(phase)
    key = new_key()
    stores.phased.add_credit(key, 5_000, tx())
    accepted: list[int] = []
    lock = threading.Lock()

    def hold_or_debit(index: int) -> None:
        try:
            if index % 2:
                stores.phased.place_hold(key, 1_000, hold_id(), timeout_s=HOUR_S)
            else:
                stores.phased.subtract_credit(key, 1_000, tx())
        except errors.InsufficientFunds:
            return
        with lock:
            accepted.append(index)

    run_concurrently(hold_or_debit, range(16), workers=8)
    report = stores.mirror().drain()

    balance = stores.mongo.get_balance(key)
    assert len(accepted) == 5 and balance.credit_minor == 0
    assert balance.held_minor + balance.debit_minor == 5_000
    assert report.parked == 0
    assert stores.tigerbeetle.get_balance(key) == balance


def test_the_sweeps_expiry_on_mongodb_is_mirrored_and_frees_tigerbeetles_held_amount(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    _move_mongo_expiry(stores, placed, datetime.now(UTC) - timedelta(seconds=1))

    stores.mongo.sweep_expired_holds()
    stores.mirror().drain()

    assert stores.tigerbeetle.get_balance(key).held_minor == 0
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def test_a_shadow_read_of_a_wallet_with_an_open_hold_matches(stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 400, hold_id(), timeout_s=HOUR_S)

    assert stores.phased.get_balance(key).held_minor == 400

    comparison = ShadowComparison.objects.filter(client_id=key.client_id).latest("pk")
    assert comparison.outcome == ShadowComparison.Outcome.MATCH


def test_a_shadow_read_taken_before_a_capture_is_compared_at_its_own_wallet_seq_and_matches(
    stores: Stores,
) -> None:
    """A capture is a log entry of its own (the next wallet_seq), so the read is compared
    with TigerBeetle's balance before the capture's transfer, not skipped."""
    enter_phase(Phase.SHADOW_READ)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=HOUR_S)
    read, wallet_seq = stores.mongo.get_balance_and_seq(key)
    stores.phased.capture_hold(placed)
    stores.mirror().drain()

    comparison = compare_shadow_read(
        read, wallet_seq, stores.outbox, stores.tigerbeetle, stores.batches
    )

    assert comparison.outcome == ShadowComparison.Outcome.MATCH
