"""The backfill: legacy wallets imported with their opening balances, exactly, idempotently,
resumably, and safely while dual write runs."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connections
from tigerbeetle import Account, AccountFlags, Transfer, TransferFlags
from tigerbeetle import id as tb_id

from domain.errors import StoreUnavailable
from domain.money import ledger_for_currency
from flags.models import Milestone
from flags.phases import Phase
from flags.write_lock import mirror_run_fenced
from ledger.batches import LedgerBatches
from ledger.engine.backend import EngineBackend
from ledger.history import transfer_timestamps
from ledger.stores.mongo_database import MongoDatabase
from ledger.tb_model import opening_debit_transfer_id
from migration import backfill as backfill_module
from migration.backfill import Backfill, BackfillReport, CycleCollection, ReadAhead
from migration.legacy_scan import WalletSnapshot
from migration.outbox import MirrorState
from registry.models import WalletAccount, WalletTransfer
from tests.conftest import ledger_scope
from tests.migration.conftest import (
    Stores,
    assert_stores_agree,
    enter_phase,
    legacy_wallet,
    new_key,
    tx,
)
from wallet_site.wiring import build_runtime


def backfill(stores: Stores) -> Backfill:
    return Backfill(stores.scan, stores.outbox, stores.batches)


def test_a_legacy_wallet_arrives_with_all_three_balance_fields(stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=7_000, debit_minor=3_000)

    report = backfill(stores).run(progress=False)

    assert (report.imported, report.failed) == (1, [])
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (7_000, 3_000, 10_000)


def test_opening_balances_are_imported_code_4_transfers_with_the_original_time(
    stores: Stores,
) -> None:
    key = new_key()
    created = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    legacy_wallet(stores, key, credit_minor=500, debit_minor=200, created_at=created)

    backfill(stores).run(progress=False)

    account_id = ledger_scope().ids.account_id(key)
    account = stores.tigerbeetle.backend.lookup_accounts([account_id])[0]
    opening = stores.tigerbeetle.backend.lookup_transfers(
        [
            ledger_scope().ids.opening_balance_transfer_id(account_id),
            opening_debit_transfer_id(account_id, ids=ledger_scope().ids),
        ]
    )
    assert account.flags & AccountFlags.IMPORTED
    assert [t.code for t in opening] == [4, 4]
    assert all(t.flags & TransferFlags.IMPORTED for t in opening)
    assert {t.user_data_64 for t in opening} == {int(created.timestamp() * 1000)}


def test_on_a_ledger_with_nothing_later_the_account_keeps_its_original_time(
    db: None, mongo_url: str, mongo_database_name: str
) -> None:
    """Only an empty ledger can take a 2024 timestamp (imported timestamps never go back past
    the cluster's latest), so this runs on the engine's test database: a shared real cluster
    already holds events from now (the case of the next test)."""
    stores = Stores(
        build_runtime(
            scope=ledger_scope(),
            mongo_database=MongoDatabase(mongo_url, name=mongo_database_name),
            backend=EngineBackend(),
        )
    )
    key = new_key()
    created = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    legacy_wallet(stores, key, credit_minor=500, debit_minor=200, created_at=created)

    backfill(stores).run(progress=False)

    account = stores.tigerbeetle.backend.lookup_accounts([ledger_scope().ids.account_id(key)])[0]
    assert account.timestamp == int(created.timestamp() * 1e9)


def test_after_live_traffic_the_original_time_stays_in_user_data_64(stores: Stores) -> None:
    stores.phased.add_credit(new_key(), 100, tx())
    stores.mirror().drain()  # the cluster now holds events timestamped now
    key = new_key()
    created = datetime(2023, 1, 2, tzinfo=UTC)
    legacy_wallet(stores, key, credit_minor=100, debit_minor=0, created_at=created)

    backfill(stores).run(progress=False)

    account_id = ledger_scope().ids.account_id(key)
    opening = stores.tigerbeetle.backend.lookup_transfers(
        [ledger_scope().ids.opening_balance_transfer_id(account_id)]
    )
    assert opening[0].user_data_64 == int(created.timestamp() * 1000)
    assert opening[0].timestamp > int(created.timestamp() * 1e9)


def test_a_live_write_between_two_pages_is_passed_by_the_next_page(stores: Stores) -> None:
    first, second = new_key(), new_key()
    legacy_wallet(stores, first, credit_minor=300, debit_minor=100)
    legacy_wallet(stores, second, credit_minor=700, debit_minor=200)
    job, report = backfill(stores), BackfillReport()
    pages = list(stores.scan.wallet_batches(1))
    job.import_page(pages[0], report)

    live_id = tx()
    stores.tigerbeetle.add_credit(new_key(), 100, live_id)  # later than the first page's clock
    job.import_page(pages[1], report)

    assert (report.imported, report.failed) == (2, [])
    assert_stores_agree(stores, [first, second])
    live_transfer_id = ledger_scope().ids.transaction_transfer_id(live_id)
    live_timestamp = transfer_timestamps(stores.tigerbeetle.backend, [live_transfer_id])[
        live_transfer_id
    ]
    account = stores.tigerbeetle.backend.lookup_accounts([ledger_scope().ids.account_id(second)])[0]
    assert account.timestamp > live_timestamp


def test_completing_the_backfill_records_the_milestone(stores: Stores) -> None:
    legacy_wallet(stores, new_key(), credit_minor=1, debit_minor=0)
    backfill(stores).run(progress=False)
    assert Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists()


def test_a_second_run_imports_nothing_again(stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=900, debit_minor=100)
    backfill(stores).run(progress=False)

    again = backfill(stores).run(progress=False)

    assert (again.imported, again.already_imported) == (0, 1)
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (900, 100, 1_000)


def test_pages_cover_every_wallet_exactly_once(stores: Stores) -> None:
    keys = [new_key() for _ in range(230)]
    for number, key in enumerate(keys):
        legacy_wallet(stores, key, credit_minor=number + 1, debit_minor=number)

    report = backfill(stores).run(page_size=100, progress=False)

    assert (report.scanned, report.imported) == (230, 230)
    assert_stores_agree(stores, keys)


def test_wallets_born_with_the_log_are_left_to_the_mirror(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    report = backfill(stores).run(progress=False)
    assert (report.imported, report.log_complete) == (0, 1)


def test_a_run_interrupted_after_tigerbeetle_adopts_what_it_wrote(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    interrupted = backfill(stores)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("killed between TigerBeetle and the registry")

    monkeypatch.setattr(interrupted, "_record", crash)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(progress=False)
    assert not WalletAccount.objects.filter(client_id=key.client_id).exists()
    stores.phased.add_credit(key, 250, tx())  # a write after the first run's snapshot

    report = backfill(stores).run(progress=False)

    assert report.imported == 1
    assert WalletAccount.objects.get(client_id=key.client_id).opening_seq == 0
    stores.mirror().drain()
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (1_250, 0, 1_250)


def test_writes_during_dual_write_are_counted_once_across_the_snapshot(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.phased.add_credit(key, 10, tx())  # before the snapshot: in the opening balance
    page = next(stores.scan.wallet_batches(10))
    stores.phased.subtract_credit(key, 300, tx())  # after the snapshot: mirrored
    log = stores.mongo.database.log()
    assert {e["mirror_state"] for e in log.find({"client_id": key.client_id})} == {
        MirrorState.AWAITING_BACKFILL
    }

    backfill(stores).import_page(page, BackfillReport())
    stores.mirror().drain()

    states = [e["mirror_state"] for e in log.find({"client_id": key.client_id}).sort("wallet_seq")]
    assert states == [MirrorState.COVERED, MirrorState.MIRRORED]
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (710, 300, 1_010)


def test_a_run_that_died_before_settling_a_pages_log_leaves_it_to_the_next_run(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's registry rows committed, then MongoDB failed the read of its log: the
    wallet is imported, its entry still waits for the backfill, its covered transaction is
    not registered. The next run finds the wallet imported and settles its log."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    covered = tx()
    stores.phased.add_credit(key, 10, covered)  # before the snapshot: in the opening balance
    log = stores.mongo.database.log()

    def mongodb_fails(opening_seqs: Any) -> Any:
        raise StoreUnavailable("MongoDB failed: timed out (test)")

    with monkeypatch.context() as failing:
        failing.setattr(stores.outbox, "backfilled_entries", mongodb_fails)
        with pytest.raises(StoreUnavailable):
            backfill(stores).run(progress=False)
    assert WalletAccount.objects.get(client_id=key.client_id).opening_seq == 1
    assert log.find_one({"_id": covered})["mirror_state"] == MirrorState.AWAITING_BACKFILL
    assert not WalletTransfer.objects.filter(transaction_id=covered).exists()

    report = backfill(stores).run(progress=False)

    assert (report.already_imported, report.imported) == (1, 0)
    assert log.find_one({"_id": covered})["mirror_state"] == MirrorState.COVERED
    assert WalletTransfer.objects.filter(transaction_id=covered).exists()
    stores.phased.add_credit(key, 5, tx())
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (1_015, 0, 1_015)


def test_one_read_finds_the_covered_transactions_and_the_entries_to_release(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, other = new_key(), new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    legacy_wallet(stores, other, credit_minor=1_000, debit_minor=0)
    covered, later = tx(), tx()
    stores.phased.add_credit(key, 10, covered)  # wallet_seq 1: the snapshot's S
    stores.phased.subtract_credit(key, 300, later)  # wallet_seq 2: after it
    stores.phased.add_credit(other, 5, tx())  # a wallet not in the page

    entries = stores.outbox.backfilled_entries({key: 1})

    assert [(entry.key, entry.transaction_id) for entry in entries.transactions] == [(key, covered)]
    assert (entries.covered, entries.after) == ([covered], [later])


def test_an_inconsistent_legacy_wallet_is_reported_and_keeps_its_available_credit(
    stores: Stores,
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=500, debit_minor=100, historical_credit_minor=900)
    report = backfill(stores).run(progress=False)
    assert report.inconsistent == 1
    assert stores.tigerbeetle.get_balance(key).credit_minor == 500


def test_a_mongodb_failure_while_reading_ahead_stops_the_run_after_the_pages_read(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        legacy_wallet(stores, key, credit_minor=100, debit_minor=0)
    scan = stores.scan
    real_batches = scan.wallet_batches

    def failing_after_one_page(batch_size: int) -> Iterator[list[WalletSnapshot]]:
        pages = real_batches(batch_size)
        yield next(pages)
        raise StoreUnavailable("MongoDB failed: connection reset")

    monkeypatch.setattr(scan, "wallet_batches", failing_after_one_page)

    with pytest.raises(StoreUnavailable):
        Backfill(scan, stores.outbox, stores.batches).run(page_size=2, progress=False)

    imported = WalletAccount.objects.filter(client_id__in=[k.client_id for k in keys])
    assert imported.count() == 2
    assert not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists()


def test_reading_ahead_keeps_the_order_and_at_most_the_pages_asked_for() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for number in range(20):
            produced.append(number)
            yield number

    with ReadAhead(source(), pages_max=2) as pages:
        consumed = []
        for number in pages:
            time.sleep(0.01)  # the reader has time to run ahead, but no further than allowed
            assert len(produced) <= number + 1 + 2 + 1  # queued ones and the one in hand
            consumed.append(number)
    assert consumed == list(range(20))


def test_leaving_a_read_ahead_early_stops_its_reader_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    reader = ReadAhead(endless(), pages_max=1)
    with reader as pages:
        for number in pages:
            if number == 3:
                break

    assert closed.is_set()
    assert not reader._thread.is_alive()


# --- Python's cycle collector during a run ----------------------------------------------------


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def test_a_run_pauses_automatic_cycle_collection_and_restores_it(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, collector_enabled: None
) -> None:
    for _ in range(3):
        legacy_wallet(stores, new_key(), credit_minor=100, debit_minor=0)
    seen_during_run: list[bool] = []
    real_select = Backfill._select

    def select(self: Backfill, page: list[WalletSnapshot], report: BackfillReport) -> Any:
        seen_during_run.append(gc.isenabled())
        return real_select(self, page, report)

    monkeypatch.setattr(Backfill, "_select", select)
    backfill(stores).run(page_size=2, progress=False)

    assert seen_during_run and not any(seen_during_run)
    assert gc.isenabled()


def test_a_run_collects_cycles_every_few_pages(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, collector_enabled: None
) -> None:
    for _ in range(4):
        legacy_wallet(stores, new_key(), credit_minor=100, debit_minor=0)
    monkeypatch.setattr(backfill_module, "COLLECT_CYCLES_EVERY_PAGES", 2)
    full_collections = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_collections.append(info["collected"])

    gc.callbacks.append(count)
    try:
        report = backfill(stores).run(page_size=1, progress=False)
    finally:
        gc.callbacks.remove(count)

    assert len(full_collections) == report.scanned // 2


def test_a_run_leaves_cycle_collection_off_when_it_was_off(collector_enabled: None) -> None:
    gc.disable()
    with CycleCollection(every_pages=1) as cycles:
        cycles.page_done()
    assert not gc.isenabled()


class LiveWritesBetweenTheSends(LedgerBatches):
    """The jobs' batch port of a backfill under live writes: after each batch of imported
    accounts is in, before the opening transfers go, a live transfer lands in the cluster
    (as the mirror's and the API's writes do beside the backfill)."""

    def __init__(self, stores: Stores) -> None:
        super().__init__(stores.tigerbeetle.backend, scope=ledger_scope())
        ledger = ledger_for_currency("USD")
        self._live = [Account(id=tb_id(), ledger=ledger, code=1) for _ in range(2)]
        assert all(r.status.name == "CREATED" for r in super().create_accounts(self._live))
        self.live_writes = 0

    def create_accounts(self, accounts: list[Account]) -> Any:
        results = super().create_accounts(accounts)
        if any(a.flags & AccountFlags.IMPORTED for a in accounts):
            assert super().create_transfers([self.live_transfer()])[0].status.name == "CREATED"
            self.live_writes += 1
        return results

    def live_transfer(self) -> Transfer:
        return Transfer(
            id=tb_id(),
            debit_account_id=self._live[0].id,
            credit_account_id=self._live[1].id,
            amount=1,
            ledger=self._live[0].ledger,
            code=1,
        )


def test_live_writes_between_the_accounts_and_the_transfers_do_not_fail_the_import(
    stores: Stores,
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        legacy_wallet(stores, key, credit_minor=1_000, debit_minor=250)
    live = LiveWritesBetweenTheSends(stores)

    report = Backfill(stores.scan, stores.outbox, live).run(page_size=2, progress=False)

    assert (report.imported, report.failed) == (3, [])
    assert live.live_writes >= 2  # one page of two wallets, one of one, each raced
    assert_stores_agree(stores, keys)


class LiveAccountAfterEachClockRead(LiveWritesBetweenTheSends):
    """The jobs' batch port of a backfill beside a mirror creating new wallets' accounts: one
    lands each time the backfill has asked for the cluster's latest timestamp, before its
    own accounts go (an imported account must postdate every account)."""

    def create_accounts(self, accounts: list[Account]) -> Any:
        return LedgerBatches.create_accounts(self, accounts)

    def latest_timestamp(self) -> int:
        latest = super().latest_timestamp()
        live = Account(id=tb_id(), ledger=self._live[0].ledger, code=1)
        assert super().create_accounts([live])[0].status.name == "CREATED"
        self.live_writes += 1
        return latest


def test_a_live_account_after_every_read_of_the_clusters_clock_does_not_fail_the_import(
    stores: Stores,
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        legacy_wallet(stores, key, credit_minor=1_000, debit_minor=250)
    live = LiveAccountAfterEachClockRead(stores)

    report = Backfill(stores.scan, stores.outbox, live).run(page_size=3, progress=False)

    assert (report.imported, report.failed) == (3, [])
    assert live.live_writes >= 1  # the first attempt raced
    assert_stores_agree(stores, keys)


MIRROR_SEND_WAIT_S = 0.3


class MirrorSendBeforeEachImport(LiveWritesBetweenTheSends):
    """The jobs' batch port of a backfill beside a mirror sweep sending batch after batch:
    before each send of imported events a mirror run, in a thread of its own and inside the
    share fence every mirror run holds, sends a transfer; the import's send goes once that
    transfer is in, or once the run has waited MIRROR_SEND_WAIT_S (held out by the page)."""

    def __init__(self, stores: Stores) -> None:
        super().__init__(stores)
        self.runs: list[threading.Thread] = []
        self.outcomes: list[str] = []  # each mirror run's, once it ended
        self.sent_first = 0
        self.kept_waiting = 0

    def create_accounts(self, accounts: list[Account]) -> Any:
        if any(a.flags & AccountFlags.IMPORTED for a in accounts):
            self._mirror_run_first()
        return LedgerBatches.create_accounts(self, accounts)

    def create_transfers(self, transfers: list[Transfer]) -> Any:
        if any(t.flags & TransferFlags.IMPORTED for t in transfers):
            self._mirror_run_first()
        return super().create_transfers(transfers)

    def _mirror_run_first(self) -> None:
        sent = threading.Event()

        def mirror_run() -> None:
            try:
                with mirror_run_fenced(10) as admitted:
                    (result,) = LedgerBatches.create_transfers(self, [self.live_transfer()])
                    self.outcomes.append(f"admitted={admitted} {result.status.name}")
                    sent.set()
            except Exception as exc:
                self.outcomes.append(repr(exc))
            finally:
                connections.close_all()

        run = threading.Thread(target=mirror_run)
        run.start()
        self.runs.append(run)
        if sent.wait(MIRROR_SEND_WAIT_S):
            self.sent_first += 1
        else:
            self.kept_waiting += 1


def test_a_page_raced_by_the_mirror_tries_again_alone_while_mirror_runs_wait(
    committed_stores: Stores,
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        legacy_wallet(committed_stores, key, credit_minor=1_000, debit_minor=250)
    racing = MirrorSendBeforeEachImport(committed_stores)

    try:
        report = Backfill(committed_stores.scan, committed_stores.outbox, racing).run(
            page_size=3, progress=False
        )
    finally:
        for run in racing.runs:
            run.join(10)

    assert (report.imported, report.failed) == (3, [])
    assert racing.sent_first >= 1  # the first attempt was raced
    assert racing.kept_waiting >= 1  # the next one went alone
    assert racing.outcomes == ["admitted=True CREATED"] * len(racing.runs)  # each sent, after
    assert_stores_agree(committed_stores, keys)
