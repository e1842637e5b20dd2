"""The backfill carries a legacy wallet's open holds (issue 23, item 1): a hold open at the
wallet's snapshot becomes an ordinary pending transfer after its imported opening balance
(migration/backfill_holds.py), so TigerBeetle's available and held match MongoDB's, and the
hold is captured, released or expires later in phases 1-3 (the mirror) and in phase 4.
Nothing the backfill or the mirror sends for it is imported: TigerBeetle 0.17.9 crashes on an
imported post or void of a pending transfer that has a timeout, and these tests run on the
real server too (TB_ADDRESSES)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from tigerbeetle import Transfer, TransferFlags

from domain import errors
from domain.history import HistoryQuery, PointKind
from domain.holds import HoldState
from domain.ids import WalletKey
from flags.models import Milestone
from flags.phases import Phase, current_state
from ledger.stores.mongo_documents import decimal128, key_filter
from migration.backfill import Backfill, BackfillReport
from migration.phase_change import change_phase
from migration.reconciliation import Reconciliation
from registry.models import WalletHold
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

HOUR_S = 3600
_RESOLVING = TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER


def hold_id() -> str:
    return f"hold-{uuid.uuid4().hex}"


@pytest.fixture
def sent(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Transfer]]:
    """Every transfer the backfill and the mirror send TigerBeetle (a spy on the backend)."""
    transfers: list[Transfer] = []
    backend = stores.tigerbeetle.backend
    create = backend.create_transfers

    def spy(batch: list[Transfer]) -> object:
        transfers.extend(batch)
        return create(batch)

    monkeypatch.setattr(backend, "create_transfers", spy)
    yield transfers


def backfill(stores: Stores) -> BackfillReport:
    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    assert report.failed == []
    return report


def legacy_with_hold(stores: Stores, *, timeout_s: int = HOUR_S) -> tuple[WalletKey, str]:
    """A legacy wallet (1,000 credit, 500 debit) holding 400 since phase 0; dual write on."""
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=500)
    placed = hold_id()
    stores.phased.place_hold(key, 400, placed, timeout_s=timeout_s, made_by="payments")
    change_phase(Phase.DUAL_WRITE, "tester", stores.mongo, stores.batches)
    return key, placed


def _into_phase_4(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    if not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists():
        Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)


def assert_nothing_imported_resolves_or_holds(sent: list[Transfer]) -> None:
    imported = [t for t in sent if t.flags & TransferFlags.IMPORTED]
    assert imported, "the backfill's opening balance is imported"
    assert not [t for t in imported if t.flags & (_RESOLVING | TransferFlags.PENDING)]


@pytest.mark.usefixtures("criteria_not_awaited")
def test_dual_write_starts_with_a_legacy_wallets_open_hold_and_the_backfill_carries_it(
    stores: Stores, sent: list[Transfer]
) -> None:
    key, placed = legacy_with_hold(stores)
    assert current_state().phase == Phase.DUAL_WRITE

    report = backfill(stores)
    mirrored = stores.mirror().drain()
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run(triggered_by="test")

    assert (report.imported, report.holds_carried, mirrored.parked) == (1, 1, 0)
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (600, 500, 1_500)
    assert stores.tigerbeetle.get_balance(key).held_minor == 400
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert (run.checked, run.matched, run.mismatched) == (1, 1, 0)
    pending = [t for t in sent if t.flags & TransferFlags.PENDING]
    assert [(t.amount, bool(t.flags & TransferFlags.IMPORTED)) for t in pending] == [(400, False)]
    assert HOUR_S - 5 <= pending[0].timeout <= HOUR_S  # what is left of MongoDB's expiry
    row = WalletHold.objects.get(hold_id=placed)
    assert (row.state, row.amount_minor, row.made_by) == ("open", 400, "payments")
    mongo_expiry = stores.mongo.get_hold(placed).expires_at
    assert abs(row.expires_at - mongo_expiry) < timedelta(seconds=5)
    assert_nothing_imported_resolves_or_holds(sent)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_backfilled_hold_is_captured_in_phase_1_by_an_ordinary_post(
    stores: Stores, sent: list[Transfer]
) -> None:
    key, placed = legacy_with_hold(stores)
    backfill(stores)

    stores.phased.capture_hold(placed, amount_minor=250, made_by="payments")
    mirrored = stores.mirror().drain()

    assert mirrored.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (750, 750, 1_500)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    row = WalletHold.objects.get(hold_id=placed)
    assert (row.state, row.captured_minor, row.needs_copy_back) == ("captured", 250, False)
    assert sent[-1].flags == TransferFlags.POST_PENDING_TRANSFER
    assert_nothing_imported_resolves_or_holds(sent)
    # The same history but TigerBeetle's opening balance (docs/migration.md): the hold is
    # timed at MongoDB's placement, not at the import.
    points = stores.tigerbeetle.history(HistoryQuery(key=key)).points
    assert [p.kind for p in points] == [
        PointKind.CAPTURE,
        PointKind.HOLD,
        PointKind.OPENING_BALANCE,
    ]
    assert points[:-1] == stores.mongo.history(HistoryQuery(key=key)).points


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_backfilled_hold_is_released_in_phase_1(stores: Stores, sent: list[Transfer]) -> None:
    key, placed = legacy_with_hold(stores)
    backfill(stores)

    stores.phased.release_hold(placed)
    stores.phased.subtract_credit(key, 1_000, tx())  # spends what the release freed
    mirrored = stores.mirror().drain()

    assert mirrored.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (0, 1_500, 1_500)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert WalletHold.objects.get(hold_id=placed).state == "released"
    assert_nothing_imported_resolves_or_holds(sent)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_backfilled_hold_is_captured_in_phase_4_and_copied_back_on_a_step_back(
    stores: Stores, sent: list[Transfer]
) -> None:
    key, placed = legacy_with_hold(stores)
    backfill(stores)
    _into_phase_4(stores)

    captured = stores.phased.capture_hold(placed, amount_minor=300, made_by="payments")
    assert captured.hold.state == HoldState.CAPTURED
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (700, 800, 1_500)
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_balance(key).fields_minor() == (700, 800, 1_500)
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)
    copied = stores.mongo.get_hold(placed)
    assert (copied.state, copied.captured_minor) == (HoldState.CAPTURED, 300)
    assert_nothing_imported_resolves_or_holds(sent)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_backfilled_hold_expires_on_mongodb_in_phase_1_and_the_mirror_carries_it(
    stores: Stores, sent: list[Transfer]
) -> None:
    key, placed = legacy_with_hold(stores, timeout_s=2)
    backfill(stores)
    assert stores.tigerbeetle.get_balance(key).held_minor == 400

    time.sleep(2.1)  # MongoDB's expiry passes (the cluster's may not yet: whole seconds)
    assert stores.mongo.sweep_expired_holds() == 1
    mirrored = stores.mirror().drain()

    assert mirrored.parked == 0
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (1_000, 500, 1_500)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert WalletHold.objects.get(hold_id=placed).state == "expired"
    assert_nothing_imported_resolves_or_holds(sent)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_backfilled_hold_expires_by_itself_on_tigerbeetle_in_phase_4(
    stores: Stores, sent: list[Transfer]
) -> None:
    key, placed = legacy_with_hold(stores, timeout_s=2)
    backfill(stores)
    _into_phase_4(stores)
    assert stores.tigerbeetle.get_balance(key).held_minor == 400

    time.sleep(3.2)  # the cluster's timeout: what was left of MongoDB's, rounded up

    assert stores.tigerbeetle.get_balance(key).fields_minor() == (1_000, 500, 1_500)
    assert stores.tigerbeetle.get_balance(key).held_minor == 0
    assert stores.phased.get_hold(placed).state == HoldState.EXPIRED
    with pytest.raises(errors.HoldNotOpen):
        stores.phased.capture_hold(placed, amount_minor=100)
    assert_nothing_imported_resolves_or_holds(sent)


def test_in_dual_write_a_legacy_wallet_not_imported_yet_takes_holds_and_the_backfill_carries_them(
    stores: Stores,
) -> None:
    """Placed before the backfill's snapshot: in the import; after it: mirrored."""
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    enter_phase(Phase.DUAL_WRITE)
    before, after = hold_id(), hold_id()
    stores.phased.place_hold(key, 300, before, timeout_s=HOUR_S)
    page = next(stores.scan.wallet_batches(10))  # the snapshot
    stores.phased.place_hold(key, 200, after, timeout_s=HOUR_S)

    report = BackfillReport()
    Backfill(stores.scan, stores.outbox, stores.batches).import_page(page, report)
    mirrored = stores.mirror().drain()

    assert (report.imported, report.failed, mirrored.parked) == (1, [], 0)
    assert stores.tigerbeetle.get_balance(key).held_minor == 500
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert set(WalletHold.objects.values_list("hold_id", "state")) == {
        (before, "open"),
        (after, "open"),
    }


def test_a_hold_resolved_after_the_snapshot_is_in_the_import_then_resolved_by_the_mirror(
    stores: Stores,
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    enter_phase(Phase.DUAL_WRITE)
    captured, released = hold_id(), hold_id()
    stores.phased.place_hold(key, 300, captured, timeout_s=HOUR_S)
    stores.phased.place_hold(key, 200, released, timeout_s=HOUR_S)
    page = next(stores.scan.wallet_batches(10))  # both open at the snapshot
    stores.phased.capture_hold(captured, amount_minor=100)
    stores.phased.release_hold(released)

    report = BackfillReport()
    Backfill(stores.scan, stores.outbox, stores.batches).import_page(page, report)
    mirrored = stores.mirror().drain()

    assert (report.imported, report.failed, mirrored.parked) == (1, [], 0)
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (900, 100, 1_000)
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def test_a_wallet_whose_held_amount_its_log_does_not_explain_is_left_for_support(
    stores: Stores,
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.mongo.database.wallets().update_one(
        key_filter(key), {"$set": {"held": decimal128(250, key.currency)}}
    )

    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)

    assert report.imported == 0
    assert report.failed == [
        f"{key.describe()}: holds 250 in its document, 0 in its log's open holds"
    ]
    assert not report.complete


def test_a_run_interrupted_after_tigerbeetle_places_the_holds_of_the_snapshot_it_adopts(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    enter_phase(Phase.DUAL_WRITE)
    placed = hold_id()
    stores.phased.place_hold(key, 300, placed, timeout_s=HOUR_S)
    interrupted = Backfill(stores.scan, stores.outbox, stores.batches)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("killed between TigerBeetle and the registry")

    monkeypatch.setattr(interrupted, "_record", crash)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(progress=False)
    stores.phased.release_hold(placed)  # after the first run's snapshot

    report = backfill(stores)
    mirrored = stores.mirror().drain()

    assert (report.imported, mirrored.parked) == (1, 0)
    assert stores.tigerbeetle.get_balance(key).held_minor == 0
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    assert WalletHold.objects.get(hold_id=placed).state == "released"
