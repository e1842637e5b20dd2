"""The backfill: every legacy MongoDB wallet imported into TigerBeetle with its opening balance.

A legacy wallet is one MongoDB held before it kept a complete transaction log (its document
lacks `log_complete`); wallets born with the log reach TigerBeetle through the mirror alone.

For each legacy wallet, from one read of its document (balance and the `wallet_seq` it stands
at, S):
- an imported wallet account, and an imported linked pair of opening-balance transfers
  (code 4): system -> wallet for credit + debit, wallet -> system for debit, so TigerBeetle's
  credits_posted / debits_posted give MongoDB's three fields. The pair carries S in
  user_data_128 and the wallet's original creation time (Unix ms) in user_data_64;
- then the registry row, with opening_seq = S, and the wallet's outbox entries released:
  those up to S are in the opening balance (`covered`), later ones go to the mirror. This is
  what makes the backfill safe while dual write runs: every change is either before S or
  after it, never both, never neither.

TigerBeetle requires imported timestamps to increase past everything it already holds, so a
wallet keeps its original creation time as its timestamp only when the backfill runs before
any live traffic; otherwise the timestamps follow the cluster's latest and the original time
stays in user_data_64.

Idempotent and resumable: ids are deterministic, an opening pair found from an earlier
interrupted run is adopted with its own S, and imported wallets are skipped.

Only wallets of clients inside the dual-write share are imported (the share is read for each
page, so a raise during a run counts from its next page); the others are counted
(`outside_share`) and wait for the raise that takes them in, which runs the backfill again.
The milestone "backfill completed" is recorded only by a run that left no wallet out.
"""

from __future__ import annotations

import functools
import gc
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.db import connections, transaction
from django.utils import timezone
from tigerbeetle import (
    Account,
    CreateTransferStatus,
    Transfer,
    TransferFlags,
)
from tqdm import tqdm

from domain.ids import IdSpace, WalletKey
from domain.money import ledger_for_currency
from domain.wallets import write_time
from flags.models import Milestone
from flags.phases import current_state
from ledger.batches import LedgerBatches
from ledger.tb_model import (
    imported_wallet_account,
    opening_amounts,
    opening_debit_transfer_id,
    opening_pair,
)
from migration.backfill_holds import CarriedHolds, HoldImport
from migration.legacy_scan import LegacyScan, WalletSnapshot
from migration.outbox import BackfilledEntries, CoveredTransaction, MirrorOutbox
from migration.page_import import PageEvents, PageImport, WrittenPage
from registry import accounts as account_registry
from registry import transfers as transfer_registry
from registry.models import WalletAccount
from registry.transfers import NewTransfer

log = logging.getLogger(__name__)

PAGE_SIZE = 2000
READ_AHEAD_PAGES = 1  # pages read from MongoDB ahead of the one being imported
READ_AHEAD_POLL_S = 0.1  # how often a reader waiting on a full queue checks for a stop
COLLECT_CYCLES_EVERY_PAGES = 100  # during a run, instead of Python's automatic collection
_T = TypeVar("_T")


@functools.cache
def _linked(flags: TransferFlags) -> TransferFlags:
    """`flags` with LINKED, combined once per value (an enum flag's `|` costs 2 us)."""
    return flags | TransferFlags.LINKED


@dataclass
class BackfillReport:
    scanned: int = 0
    imported: int = 0
    already_imported: int = 0
    log_complete: int = 0  # born with the log: the mirror carries them
    outside_share: int = 0  # legacy wallets of clients outside the dual-write share: left out
    inconsistent: int = 0  # credit != historical_credit - debit in MongoDB
    holds_carried: int = 0  # open holds of imported wallets, placed in TigerBeetle
    failed: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    # Of duration_s, how long the run waited for MongoDB's next page and for TigerBeetle's
    # half of a page: which input bounds it.
    read_wait_s: float = 0.0
    tigerbeetle_wait_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Every legacy wallet is imported: nothing failed and none was left out."""
        return not self.failed and not self.outside_share


class _InlineExecutor(Executor):
    """Runs each task at once in the caller's thread: the pipeline's order without a thread."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class Backfill:
    def __init__(self, scan: LegacyScan, outbox: MirrorOutbox, tigerbeetle: LedgerBatches) -> None:
        """`scan` reads the legacy wallets; `outbox` releases their log entries once
        imported."""
        self.scan = scan
        self.outbox = outbox
        self.tigerbeetle = tigerbeetle
        self._holds = HoldImport(outbox, tigerbeetle)
        self._pages = PageImport(tigerbeetle, self._holds)

    def run(self, page_size: int = PAGE_SIZE, progress: bool | None = None) -> BackfillReport:
        """Import every legacy wallet; record the milestone when nothing failed.

        Three threads, each in order: a reader takes MongoDB's next page (`ReadAhead`),
        a TigerBeetle thread writes a page's accounts and opening pairs, and this thread
        checks the registry and builds the page's events before it, and writes its rows and
        releases its outbox entries after it. A page's registry half always follows its
        TigerBeetle half; it overlaps the next page's TigerBeetle half (a run stopped in
        between leaves TigerBeetle ahead of the registry, which the next run adopts).
        Python's automatic cycle collection waits until the run ends (`CycleCollection`)."""
        started = time.perf_counter()
        report = BackfillReport()
        show = sys.stderr.isatty() if progress is None else progress
        pages = ReadAhead(self.scan.wallet_batches(page_size), pages_max=READ_AHEAD_PAGES)
        in_flight: deque[tuple[int, Future[WrittenPage] | None]] = deque()
        with (
            tqdm(desc="backfill", unit="wallet", disable=not show) as bar,
            pages as pages,
            _tigerbeetle_worker(self.tigerbeetle) as worker,
            CycleCollection(every_pages=COLLECT_CYCLES_EVERY_PAGES) as cycles,
        ):
            reading = True
            try:
                for page in pages:
                    reading = False
                    todo, holds = self._select(page, report)
                    submitted = (
                        worker.submit(self._pages.write, self._events(todo, holds))
                        if todo
                        else None
                    )
                    in_flight.append((len(page), submitted))
                    while len(in_flight) > 1:  # the one just submitted stays in flight
                        bar.update(self._finish_next(in_flight, report))
                    cycles.page_done()
                    reading = True
            finally:  # at the end, or when a read failed: every page read before is imported
                while reading and in_flight:
                    bar.update(self._finish_next(in_flight, report))
        report.read_wait_s = pages.waited_s
        report.duration_s = time.perf_counter() - started
        if report.complete:
            Milestone.objects.update_or_create(
                name=Milestone.BACKFILL_COMPLETED,
                defaults={
                    "reached_at": timezone.now(),
                    "detail": {
                        "scanned": report.scanned,
                        "imported": report.imported,
                        "duration_s": round(report.duration_s, 3),
                    },
                },
            )
        return report

    def import_page(self, page: list[WalletSnapshot], report: BackfillReport) -> None:
        """One page, both halves, in this thread."""
        todo, holds = self._select(page, report)
        if todo:
            self._finish(self._pages.write(self._events(todo, holds)), report)

    # --- internals --------------------------------------------------------------------------

    def _select(
        self, page: list[WalletSnapshot], report: BackfillReport
    ) -> tuple[list[WalletSnapshot], CarriedHolds]:
        """The page's wallets still to import (the registry says which are done), and their
        holds open at their snapshots; a wallet whose log and `held` disagree is left out."""
        report.scanned += len(page)
        keys = [snapshot.balance.key for snapshot in page]
        rows = account_registry.rows_by_key(keys)
        state = current_state()
        todo: list[WalletSnapshot] = []
        imported: dict[WalletKey, int] = {}
        for snapshot in page:
            key = snapshot.balance.key
            if snapshot.log_complete:
                report.log_complete += 1
            elif key in rows and (opening_seq := rows[key].opening_seq) is not None:
                report.already_imported += 1
                imported[key] = opening_seq
            elif not state.in_dual_write_share(key.client_id):
                report.outside_share += 1
            else:
                todo.append(snapshot)
        for snapshot in todo:
            b = snapshot.balance
            if b.credit_minor != b.historical_credit_minor - b.debit_minor:
                report.inconsistent += 1
                log.warning("backfill: %s has credit != historical - debit", b.key.describe())
        self._settle_log(imported)
        holds = self._holds.read(todo)
        report.failed.extend(holds.refused.values())
        return [s for s in todo if s.balance.key not in holds.refused], holds

    def _finish_next(
        self, in_flight: deque[tuple[int, Future[WrittenPage] | None]], report: BackfillReport
    ) -> int:
        """The registry half of the oldest page in flight; how many wallets it scanned."""
        scanned, future = in_flight.popleft()
        if future is not None:
            waiting_since = time.perf_counter()
            written = future.result()
            report.tigerbeetle_wait_s += time.perf_counter() - waiting_since
            self._finish(written, report)
        return scanned

    def _finish(self, written: WrittenPage, report: BackfillReport) -> None:
        report.failed.extend(written.failed)
        if written.written:
            self._record(written, report)

    def _events(self, todo: list[WalletSnapshot], holds: CarriedHolds) -> PageEvents:
        """The page's events, oldest wallet first, without their timestamps."""
        now_ns = int(timezone.now().timestamp() * 1e9)
        created = sorted(
            (
                (int(s.created_at.timestamp() * 1e9) if s.created_at else now_ns, index)
                for index, s in enumerate(todo)
            )
        )
        todo = [todo[index] for _, index in created]
        # Looked up once a page: a setting read costs a few microseconds, a wallet's whole
        # hashing about ten.
        ledger_of = {s.balance.key.currency: 0 for s in todo}
        for currency in ledger_of:
            ledger_of[currency] = ledger_for_currency(currency)
        ledgers = sorted(set(ledger_of.values()))
        scope = self.tigerbeetle.scope
        system_ids = {ledger: scope.ids.system_account_id(ledger) for ledger in ledgers}
        accounts: list[Account] = []
        transfers: list[Transfer] = []
        chain_of: dict[WalletKey, tuple[int, int]] = {}
        account_ids: dict[WalletKey, int] = {}
        for snapshot, (created_ns, _) in zip(todo, created, strict=True):
            key = snapshot.balance.key
            ledger = ledger_of[key.currency]
            account_id = account_ids[key] = scope.ids.account_id(key)
            accounts.append(
                imported_wallet_account(key, account_id=account_id, ledger=ledger, scope=scope)
            )
            pair = opening_pair(
                snapshot.balance,
                ids=scope.ids,
                wallet_seq=snapshot.wallet_seq,
                created_ms=created_ns // 1_000_000,
                account_id=account_id,
                system_id=system_ids[ledger],
                ledger=ledger,
            )
            for transfer in pair[:-1]:
                transfer.flags = _linked(transfer.flags)
            chain_of[key] = (len(transfers), len(pair))
            transfers.extend(pair)
        return PageEvents(
            todo=todo,
            created_ns=[created_ns for created_ns, _ in created],
            ledgers=ledgers,
            system_ids=system_ids,
            accounts=accounts,
            transfers=transfers,
            chain_of=chain_of,
            account_ids=account_ids,
            holds=holds,
        )

    def _record(self, written: WrittenPage, report: BackfillReport) -> None:
        """The registry half of a page whose TigerBeetle half is done: a row each, the
        covered transactions registered, the outbox entries released."""
        chain_of, account_ids, results = written.chain_of, written.account_ids, written.results
        adopted: dict[WalletKey, int] = {}
        imported: list[WalletSnapshot] = []
        for snapshot in written.usable:
            key = snapshot.balance.key
            start, size = chain_of[key]
            statuses = [results[i].status for i in range(start, start + size)]
            if all(s == CreateTransferStatus.CREATED for s in statuses):
                imported.append(snapshot)
                continue
            # An earlier, interrupted run may have imported it from another snapshot: adopt
            # that one (its S is in user_data_128), whatever this run read.
            ids = self.tigerbeetle.scope.ids
            existing = self.tigerbeetle.lookup_transfers(
                [ids.opening_balance_transfer_id(account_ids[key])]
            ) or self.tigerbeetle.lookup_transfers(
                [opening_debit_transfer_id(account_ids[key], ids=ids)]
            )
            if existing:
                adopted[key] = existing[0].user_data_128
                imported.append(snapshot)
            else:
                names = ",".join(s.name for s in statuses)
                report.failed.append(f"{key.describe()}: opening balance refused ({names})")
        holds = self._holds_of(written, adopted=adopted)
        report.failed.extend(
            holds.refused[s.balance.key] for s in imported if s.balance.key in holds.refused
        )
        imported = [s for s in imported if s.balance.key not in holds.refused]
        wallets = [_imported(s, account_ids=account_ids, adopted=adopted) for s in imported]
        with transaction.atomic():  # a hold's row comes with its wallet's, for the mirror
            account_registry.record_imported(
                wallets, imported_at=timezone.now(), batch_size=PAGE_SIZE
            )
            report.holds_carried += self._holds.record(holds)
        self._settle_log({wallet.key: int(wallet.opening_seq) for wallet in wallets})
        report.imported += len(wallets)

    def _settle_log(self, opening_seqs: dict[WalletKey, int]) -> None:
        """The log half of wallets imported at their opening seqs: the transactions their
        opening balances cover registered, their waiting entries released. Done after the
        page's registry rows commit, so a run that died between the two (MongoDB failing
        under it) leaves it to the next run, which does it again for the page's wallets
        already imported (each step only adds what is missing): one read a page."""
        if not opening_seqs:
            return
        entries = self.outbox.backfilled_entries(opening_seqs)  # one read for both
        _register_covered_transactions(entries, ids=self.tigerbeetle.scope.ids)
        self.outbox.release(entries)

    def _holds_of(self, written: WrittenPage, *, adopted: dict[WalletKey, int]) -> CarriedHolds:
        """The page's holds placed in TigerBeetle; for the wallets an earlier run imported
        (`adopted`, at their own seq), those open at that seq, placed now: before their
        registry rows, so the mirror never resolves a hold TigerBeetle lacks."""
        if not adopted:
            return written.holds
        again = self._holds.read_at(adopted)
        self._holds.place(again, account_ids=written.account_ids, imported=set(adopted))
        return written.holds.replaced(keys=set(adopted), by=again)


class CycleCollection:
    """Python's automatic cycle collection paused for a run, a full collection every
    `every_pages` pages instead; restored as it was when the run ends.

    A page's snapshots, events and rows (some 60,000 objects) live until its registry half
    is done, and the automatic collector kept walking them, each time with every thread of
    the job stopped: 0.39 s of a 2.2 s run over 20,000 wallets, a full collection walking
    the whole process as well. They are freed by reference counting; a run of 20,000
    wallets left 137 objects in cycles, which the periodic collection reclaims."""

    def __init__(self, *, every_pages: int) -> None:
        self.every_pages = every_pages
        self._pages = 0
        self._was_enabled = False

    def page_done(self) -> None:
        self._pages += 1
        if self._pages % self.every_pages == 0:
            gc.collect()

    def __enter__(self) -> CycleCollection:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._was_enabled:
            gc.enable()


class ReadAhead(Generic[_T]):
    """The items of `source`, produced by a thread of their own up to `pages_max` ahead.

    The backfill reads MongoDB's next page (its round trips and the documents' decoding)
    while it writes the current one to TigerBeetle and the registry, whose calls release
    the GIL while they wait; one after the other, the read was a third of its time. Only the
    read moves: each snapshot is still one read of its document, imported in scan order. A
    context manager: leaving it stops the thread (a page being read is dropped)."""

    def __init__(self, source: Iterator[_T], *, pages_max: int) -> None:
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=pages_max)
        self._stop = threading.Event()
        self.waited_s = 0.0  # how long the consumer waited for the next item
        self._thread = threading.Thread(
            target=self._produce, args=(source,), name="backfill-read-ahead", daemon=True
        )
        self._thread.start()

    def _produce(self, source: Iterator[_T]) -> None:
        try:
            for item in source:
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((False, exc))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's cursor, in the thread that used it
        self._put((False, None))

    def _put(self, message: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=READ_AHEAD_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[_T]:
        while True:
            waiting_since = time.perf_counter()
            more, item = self._queue.get()
            self.waited_s += time.perf_counter() - waiting_since
            if not more:
                if item is not None:
                    raise item
                return
            yield item

    def __enter__(self) -> ReadAhead[_T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _imported(
    snapshot: WalletSnapshot, *, account_ids: dict[WalletKey, int], adopted: dict[WalletKey, int]
) -> account_registry.ImportedWallet:
    """The registry's row of an imported wallet, with what its opening pair posted (unknown
    for a pair an earlier run imported from another snapshot: adopted)."""
    key = snapshot.balance.key
    credits, debits = (None, None) if key in adopted else opening_amounts(snapshot.balance)
    return account_registry.ImportedWallet(
        key=key,
        tb_account_id=account_ids[key],
        ledger=ledger_for_currency(key.currency),
        opening_seq=adopted.get(key, snapshot.wallet_seq),
        opening_credits_minor=credits,
        opening_debits_minor=debits,
    )


def _covered_transfer(
    covered: CoveredTransaction, wallet: WalletAccount, *, ids: IdSpace
) -> NewTransfer:
    return NewTransfer(
        transaction_id=covered.transaction_id,
        wallet=wallet,
        kind=covered.kind,
        amount_minor=covered.amount_minor,
        state=covered.state,
        tb_transfer_id=ids.transaction_transfer_id(covered.transaction_id),
        tb_timestamp=None,
        created_at=write_time(covered.created_at),  # MongoDB's, the original write
        made_by=covered.made_by,
        voided_by=covered.voided_by,
        void_reason=covered.void_reason,
        voided_at=covered.voided_at,
    )


def _register_covered_transactions(entries: BackfilledEntries, *, ids: IdSpace) -> None:
    """Transactions older than a wallet's snapshot are in its opening balance, with no
    transfer of their own; registering them still lets support find and void them once
    TigerBeetle is the only store (a void posts its own compensating transfer)."""
    if not entries.transactions:
        return
    wallets = account_registry.rows_by_key({covered.key for covered in entries.transactions})
    transfer_registry.record_all(
        [
            _covered_transfer(covered, wallets[covered.key], ids=ids)
            for covered in entries.transactions
        ],
        batch_size=500,
    )


def _tigerbeetle_worker(tigerbeetle: LedgerBatches) -> Executor:
    """A thread of its own for a page's TigerBeetle half when the backend may be called from
    any thread (the real client); this thread otherwise (the embedded engine works in this
    thread's database transaction)."""
    if tigerbeetle.callable_from_any_thread:
        return _TigerBeetleThread()
    return _InlineExecutor()


class _TigerBeetleThread(ThreadPoolExecutor):
    """The one thread of a page's TigerBeetle half. A raced page takes the share fence from
    it on a database connection of its own, which closes with the thread (the database is
    not left a session per run)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="backfill-tigerbeetle")
        self._connections_closed = False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._connections_closed:
            self._connections_closed = True
            self.submit(connections.close_all).result()
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
