"""The dual-write mirror: MongoDB's outbox applied to TigerBeetle, in order, exactly once.

Each run takes pending log entries (each wallet's in `wallet_seq` order), turns them into the
transfers the TigerBeetle store would have posted (same deterministic ids), and sends them in
create_transfers batches of at most 8189. TigerBeetle answers `exists` for anything already
applied, so a run repeated after a crash posts nothing twice; only then are entries marked
mirrored. A transient failure is retried with backoff (3 tries, 100 ms x 2^n) and otherwise
left pending for the next run; an entry TigerBeetle refuses, or one that failed
MIRROR_PARK_AFTER_ATTEMPTS runs, is parked with its error for support. A wallet whose entries
cannot be mirrored at all (bad data: a NUL byte in its key, an unknown currency, a malformed
log entry) is parked with the reason on its own; it never stops the other wallets.

Wallets MongoDB held before it kept a complete log (legacy wallets) are not mirrored until the
backfill has imported their opening balance; entries older than that snapshot are then marked
`covered`.

Only clients inside the dual-write share are mirrored: the entries of the others are set
aside (`outside_share`, with the client's bucket) until a raise of the share releases them,
so a wallet is mirrored whole or not at all. Each run holds the share fence
(`flags.write_lock.mirror_run_fenced`) from its read of the share until it has applied or set
aside what it read, and a change of the share releases the entries of the clients it takes in
and commits the new share while no run is in flight: a run sees the share and the outbox
both from before the change or both from after it, so a wallet's entries are applied in
wallet_seq order across the boundary too (never a debit ahead of the credit that funds it).

A backfill page whose imported timestamps a run's transfers raced past holds the same fence
exclusively for its next attempts (`flags.write_lock.mirror_runs_paused`), and runs wait that
long (migration/page_import.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tigerbeetle import CreateTransferStatus, Transfer

from domain import errors
from domain.ids import IdSpace, WalletKey, hex_to_u128
from domain.wallets import write_time
from flags.phases import MigrationState, current_state
from flags.write_lock import mirror_run_fenced
from ledger import metrics
from ledger.backends import LedgerUnavailable
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.batches import LedgerBatches
from ledger.tb_model import credit_transfer, debit_transfer, void_transfer
from migration.hold_mirror import (
    hold_event_applied,
    hold_event_transfer,
    late_capture_transfer,
    needs_late_capture,
    record_hold_events,
)
from migration.outbox import EntryId, MirrorOutbox, MirrorState, OutboxEntry
from registry import accounts as account_registry
from registry import transfers as transfer_registry
from registry.models import WalletAccount, WalletTransfer

log = logging.getLogger(__name__)

_APPLIED = {CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS}
# What says "try again later" rather than "this wallet's data cannot be mirrored".
_OUTAGES = (errors.StoreUnavailable, LedgerUnavailable, OperationalError, InterfaceError)

_retry_transient = retry(
    retry=retry_if_exception_type(LedgerUnavailable),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.1),
    reraise=True,
)


@dataclass
class MirrorReport:
    """What one run did, for logs, metrics and tests."""

    applied: int = 0  # newly created in TigerBeetle
    already_applied: int = 0  # TigerBeetle answered exists: a repeated run
    covered: int = 0  # older than a backfill snapshot
    waiting_for_backfill: int = 0
    parked: int = 0
    failed_transiently: int = 0
    outside_share: int = 0  # set aside: their client is outside the dual-write share
    # left pending: an earlier entry of their wallet waits outside this run (sent later)
    behind_earlier: int = 0
    fenced_out: bool = False  # a change of the share held the fence past the wait: nothing done
    read: int = 0  # pending entries the run read (at most its limit)
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return (
            self.applied
            + self.already_applied
            + self.covered
            + self.parked
            + self.waiting_for_backfill
            + self.outside_share
        )

    def left_nothing_pending(self, limit: int) -> bool:
        """Whether the run read every entry pending when it looked (fewer than its limit)
        and left none of them pending (none behind an earlier one, failed for now, or set
        to wait for the backfill, which it may release again): another run now finds only
        entries that turned pending since, and those were queued to be mirrored too."""
        return self.read < limit and not (
            self.behind_earlier or self.failed_transiently or self.waiting_for_backfill
        )

    def add(self, other: MirrorReport) -> None:
        for name in (
            "applied",
            "already_applied",
            "covered",
            "waiting_for_backfill",
            "parked",
            "failed_transiently",
            "outside_share",
            "behind_earlier",
            "read",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


class Mirror:
    """Applies the outbox of one MongoDB store to TigerBeetle (through the jobs' port)."""

    def __init__(self, outbox: MirrorOutbox, tigerbeetle: LedgerBatches) -> None:
        self.outbox = outbox
        self.tigerbeetle = tigerbeetle

    def run_once(
        self, keys: list[WalletKey] | None = None, limit: int = BATCH_EVENTS_MAX
    ) -> MirrorReport:
        """One batch of at most `limit` (<= 8189) entries, inside the share fence (a run
        kept out past PHASE_CHANGE_WRITES_WAIT_S by a change of the share does nothing).

        A batch that fails for anything but an outage is applied again wallet by wallet, so
        a wallet that cannot be mirrored (bad data) is parked with its reason and never
        stops the others. Every step is idempotent, so re-applying what the failed batch
        already did posts nothing twice."""
        with mirror_run_fenced(settings.PHASE_CHANGE_WRITES_WAIT_S) as admitted:
            if not admitted:
                log.warning("mirror: a change of the dual-write share kept this run out")
                return MirrorReport(fenced_out=True)
            return self._run_once_fenced(keys, limit)

    def _run_once_fenced(self, keys: list[WalletKey] | None, limit: int) -> MirrorReport:
        state = current_state()  # the share this run applies, fixed while it holds the fence
        entries, malformed = self.outbox.pending_parking_malformed(
            min(limit, BATCH_EVENTS_MAX), keys
        )
        report = MirrorReport(parked=malformed, read=len(entries) + malformed)
        entries = self._park_unregistrable(entries, report)
        entries = self._inside_share(entries, state, report)
        if not entries:
            return report
        batch = MirrorReport()
        try:
            self._apply(entries, batch)
        except _OUTAGES:
            raise
        except Exception:
            log.exception(
                "mirror: a batch of %d entries failed; retrying wallet by wallet", len(entries)
            )
            for wallet_entries in _by_wallet(entries):
                self._apply_isolated(wallet_entries, report)
            return report
        report.add(batch)
        return report

    def _apply(self, entries: list[OutboxEntry], report: MirrorReport) -> None:
        wallets, unreachable = self._wallets({entry.key for entry in entries})
        to_send: list[OutboxEntry] = []
        covered: list[EntryId] = []
        awaiting: list[OutboxEntry] = []
        for entry in entries:
            if entry.key not in wallets:
                continue  # its account could not be created: counted as a failure below
            wallet = wallets[entry.key]
            if wallet is None:
                awaiting.append(entry)
            elif wallet.opening_seq is not None and entry.wallet_seq <= wallet.opening_seq:
                covered.append(entry.entry_id)
            else:
                to_send.append(entry)
        self.outbox.mark(covered, MirrorState.COVERED)
        if awaiting:
            self._await_backfill(awaiting)
        report.covered, report.waiting_for_backfill = len(covered), len(awaiting)
        if unreachable:
            failed = [entry for entry in entries if entry.key not in wallets]
            self._count_failure(failed, unreachable, report)
        to_send = self._in_wallet_order(to_send, report)
        if to_send:
            self._send(to_send, wallets, report)

    def _in_wallet_order(
        self, entries: list[OutboxEntry], report: MirrorReport
    ) -> list[OutboxEntry]:
        """The entries to send, less those of wallets with an earlier entry TigerBeetle may
        still be given that is not among them: sent first, a capture would meet no pending
        transfer, a debit perhaps no credit, and TigerBeetle burns the id of a transfer it
        refuses for a missing pending transfer or funds (`id_already_failed` ever after). Two
        runs at once can see a wallet's entries half-way through a change of state (each
        entry's state is written on its own): seen at a million wallets, a capture sent
        without its hold and parked for good, the hold before the run's first entry of the
        wallet, and again between two of them. The wallet's entries wait for a later run."""
        last_seqs: dict[WalletKey, int] = {}
        for entry in entries:
            last_seqs[entry.key] = max(entry.wallet_seq, last_seqs.get(entry.key, 0))
        in_run = {entry.entry_id for entry in entries}
        behind = {
            key
            for key, waiting in self.outbox.waiting_before(last_seqs).items()
            if waiting - in_run
        }
        if not behind:
            return entries
        report.behind_earlier += sum(1 for entry in entries if entry.key in behind)
        log.warning("mirror: %d wallets wait for an earlier entry of theirs", len(behind))
        return [entry for entry in entries if entry.key not in behind]

    def _apply_isolated(self, entries: list[OutboxEntry], report: MirrorReport) -> None:
        """One wallet's entries on their own (a savepoint keeps a failed database statement
        from spoiling an enclosing transaction): an outage is a failed attempt, anything
        else parks the wallet's entries with the reason."""
        wallet_report = MirrorReport()
        try:
            with transaction.atomic():
                self._apply(entries, wallet_report)
        except _OUTAGES as exc:
            self._count_failure(entries, f"{type(exc).__name__}: {exc}", report)
            return
        except Exception as exc:
            log.exception("mirror: wallet %s cannot be mirrored", entries[0].key.describe())
            self._park(entries, f"cannot be mirrored: {type(exc).__name__}: {exc}", report)
            return
        report.add(wallet_report)

    def _park_unregistrable(
        self, entries: list[OutboxEntry], report: MirrorReport
    ) -> list[OutboxEntry]:
        """Park entries of wallets whose key holds a NUL byte (the registry's text columns
        cannot store one on PostgreSQL; refused on every database alike); the rest go on."""
        unregistrable = [entry for entry in entries if _holds_nul(entry.key)]
        if unregistrable:
            self._park(
                unregistrable,
                "cannot be mirrored: its wallet key holds a NUL byte, which the registry "
                "cannot store",
                report,
            )
        return [entry for entry in entries if not _holds_nul(entry.key)]

    def _inside_share(
        self, entries: list[OutboxEntry], state: MigrationState, report: MirrorReport
    ) -> list[OutboxEntry]:
        """The entries of clients inside the dual-write share; the others' are set aside
        (`outside_share`) until a raise of the share releases them."""
        outside = [e for e in entries if not state.in_dual_write_share(e.key.client_id)]
        if not outside:
            return entries
        self.outbox.set_outside_share(outside)
        report.outside_share += len(outside)
        return [e for e in entries if state.in_dual_write_share(e.key.client_id)]

    def _park(self, entries: list[OutboxEntry], reason: str, report: MirrorReport) -> None:
        for entry in entries:
            log.error("mirror parked %r (%r): %s", entry.entry_id, entry.key.describe(), reason)
        self.outbox.mark(
            [entry.entry_id for entry in entries], MirrorState.PARKED, mirror_error=reason[:500]
        )
        report.parked += len(entries)
        report.errors.extend(f"{entry.entry_id!r}: {reason}" for entry in entries)

    def drain(
        self, keys: list[WalletKey] | None = None, max_batches: int = 1_000_000
    ) -> MirrorReport:
        """Run batches until nothing more can be applied now: until a run does nothing, or
        one read everything pending and left none of it pending. Not a last run to find
        nothing: for the per-write task (`ledger.mirror_wallet`) that one was a quarter of
        its MongoDB round trips, each waiting behind the jobs' scans at a million wallets
        (docs/benchmarks.md)."""
        total = MirrorReport()
        for _ in range(max_batches):
            report = self.run_once(keys)
            total.add(report)
            if report.done == 0 or report.left_nothing_pending(BATCH_EVENTS_MAX):
                break
        return total

    # --- internals --------------------------------------------------------------------------

    def _wallets(self, keys: set[WalletKey]) -> tuple[dict[WalletKey, WalletAccount | None], str]:
        """Registry rows of the wallets, creating TigerBeetle accounts for wallets born with
        a complete log. A row's opening_seq says up to where its log is already in
        TigerBeetle: 0 for a wallet born with the log, S for one the backfill imported at S.
        A legacy wallet has no row (or none with opening_seq) until the backfill imported
        it, so its entries wait. Wallets whose account could not be created (TigerBeetle
        unreachable) are left out, with the error."""
        rows = account_registry.rows_by_key(keys)
        unsettled = {key for key in keys if key not in rows or rows[key].opening_seq is None}
        complete_logs = self.outbox.complete_logs(unsettled)
        wallets: dict[WalletKey, WalletAccount | None] = {}
        unreachable = ""
        for key in keys:
            row = rows.get(key)
            if key not in unsettled:
                wallets[key] = row
                continue
            if key not in complete_logs:
                wallets[key] = None  # wait for the backfill
                continue
            if row is None:
                try:
                    # The legacy store enforced the limit of every write replayed here, so
                    # no reservation yet (one request fewer per new wallet); the TigerBeetle
                    # store makes it before the wallet's first credit of its own.
                    self.tigerbeetle.wallet_accounts.ensure_wallet_account(key, reserve_limit=False)
                except LedgerUnavailable as exc:
                    unreachable = f"TigerBeetle is unavailable: {exc}"
                    continue
                row = account_registry.rows_by_key([key])[key]
            if row.opening_seq is None:
                row.opening_seq = 0  # its whole history is in the log: nothing covered
                account_registry.settle_born_with_log(registry_pk=row.pk)
            wallets[key] = row
        return wallets, unreachable

    def _await_backfill(self, entries: list[OutboxEntry]) -> None:
        """Park a legacy wallet's entries until its import; if the import finished while
        this run looked, release them here (the backfill's own release may have run first)."""
        self.outbox.mark([e.entry_id for e in entries], MirrorState.AWAITING_BACKFILL)
        rows = account_registry.rows_by_key({e.key for e in entries})
        self.outbox.release_backfilled(
            {key: row.opening_seq for key, row in rows.items() if row.opening_seq is not None}
        )

    def _send(
        self,
        entries: list[OutboxEntry],
        wallets: dict[WalletKey, WalletAccount | None],
        report: MirrorReport,
    ) -> None:
        voided = {
            transaction_id: (hex_to_u128(tb_transfer_id_hex), void_attempts)
            for transaction_id, tb_transfer_id_hex, void_attempts in WalletTransfer.objects.filter(
                transaction_id__in=[e.voided_transaction_id for e in entries if e.kind == "void"]
            ).values_list("transaction_id", "tb_transfer_id_hex", "void_attempts")
        }
        ids = self.tigerbeetle.scope.ids
        now = timezone.now()
        transfers = [
            hold_event_transfer(entry, row, ids=ids, now=now)
            if entry.is_hold_event and (row := wallets[entry.key]) is not None
            else _transfer_for(entry, wallets[entry.key], voided, ids=ids)
            for entry in entries
        ]
        try:
            results = _retry_transient(self.tigerbeetle.create_transfers)(transfers)
            transfers, results = self._late_captures(entries, transfers, results, wallets)
        except LedgerUnavailable as exc:
            self._count_failure(entries, f"TigerBeetle unavailable: {exc}", report)
            return
        outcomes: dict[EntryId, tuple[str, dict[str, Any]]] = {}
        applied: list[tuple[OutboxEntry, Transfer, int]] = []
        for entry, transfer, result in zip(entries, transfers, results, strict=True):
            if (
                hold_event_applied(entry, result.status)
                if entry.is_hold_event
                else result.status in _APPLIED
            ):
                applied.append((entry, transfer, result.timestamp))
                if result.status == CreateTransferStatus.CREATED:
                    report.applied += 1
                    _count_applied(entry)
                else:
                    report.already_applied += 1
                outcomes[entry.entry_id] = (
                    MirrorState.MIRRORED,
                    {"mirrored_at": timezone.now(), "tb_timestamp": result.timestamp},
                )
            else:
                error = f"TigerBeetle refused: {result.status.name.lower()}"
                log.error("mirror parked %s (%s): %s", entry.entry_id, entry.key.describe(), error)
                report.parked += 1
                report.errors.append(f"{entry.entry_id}: {error}")
                outcomes[entry.entry_id] = (MirrorState.PARKED, {"mirror_error": error})
        _record_in_registry(
            [a for a in applied if not a[0].is_hold_event], wallets, ids=self.tigerbeetle.scope.ids
        )
        record_hold_events(
            [a for a in applied if a[0].is_hold_event],
            wallets,
            ledger=self.tigerbeetle,
        )
        self.outbox.mark_each(outcomes)

    def _late_captures(
        self,
        entries: list[OutboxEntry],
        transfers: list[Transfer],
        results: list[Any],
        wallets: dict[WalletKey, WalletAccount | None],
    ) -> tuple[list[Transfer], list[Any]]:
        """Captures whose pending transfer the cluster's timeout voided first, posted again
        as plain debits in a second request (after every other transfer of the batch, each
        a later write of its wallet in MongoDB); the transfers and results with theirs in
        place (migration.hold_mirror)."""
        late = [
            index
            for index, (entry, result) in enumerate(zip(entries, results, strict=True))
            if entry.is_hold_event and needs_late_capture(entry, result.status)
        ]
        if not late:
            return transfers, results
        ids = self.tigerbeetle.scope.ids
        debits = []
        for index in late:
            row = wallets[entries[index].key]
            assert row is not None
            debits.append(late_capture_transfer(entries[index], row, ids=ids))
        late_results = _retry_transient(self.tigerbeetle.create_transfers)(debits)
        transfers, results = list(transfers), list(results)
        for index, debit, result in zip(late, debits, late_results, strict=True):
            transfers[index] = debit
            results[index] = result
        return transfers, results

    def _count_failure(self, entries: list[OutboxEntry], error: str, report: MirrorReport) -> None:
        park_after = settings.MIRROR_PARK_AFTER_ATTEMPTS
        give_up = [e.entry_id for e in entries if e.attempts + 1 >= park_after]
        self.outbox.count_failed_attempt([e.entry_id for e in entries], error)
        self.outbox.mark(give_up, MirrorState.PARKED, mirror_error=error)
        report.failed_transiently += len(entries) - len(give_up)
        report.parked += len(give_up)
        report.errors.append(error)
        log.warning("mirror: %d entries not applied: %s", len(entries), error)


def _count_applied(entry: OutboxEntry) -> None:
    """A write TigerBeetle took from the mirror (not one it already held)."""
    if entry.is_hold_event:
        return  # not a transaction: the transaction counters leave holds out
    kind = f"void_{entry.voided_kind}" if entry.kind == "void" else entry.kind
    metrics.count_transaction(
        store="tigerbeetle", kind=kind, currency=entry.key.currency, amount_minor=entry.amount_minor
    )


def _holds_nul(key: WalletKey) -> bool:
    return any("\x00" in (field or "") for field in key.column_values())


def _by_wallet(entries: list[OutboxEntry]) -> list[list[OutboxEntry]]:
    """Entries grouped by wallet, each group in the order given (wallet_seq order)."""
    groups: dict[WalletKey, list[OutboxEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.key, []).append(entry)
    return list(groups.values())


def _transfer_for(
    entry: OutboxEntry,
    row: WalletAccount | None,
    voided: dict[str, tuple[int, int]],
    *,
    ids: IdSpace,
) -> Transfer:
    """The transfer the TigerBeetle store posts for the same operation (same id). `voided`:
    the registered transfer id and void attempts of each voided transaction, so a void
    points at the transfer the registry names (also one registered under an older id)."""
    assert row is not None
    if entry.kind == "credit":
        return credit_transfer(
            entry.transaction_id,
            ids=ids,
            tb_account_id=row.tb_account_id,
            ledger=row.ledger,
            amount_minor=entry.amount_minor,
        )
    if entry.kind == "debit":
        return debit_transfer(
            entry.transaction_id,
            ids=ids,
            tb_account_id=row.tb_account_id,
            ledger=row.ledger,
            amount_minor=entry.amount_minor,
        )
    voided_tb_transfer_id, attempt = voided.get(
        entry.voided_transaction_id, (ids.transaction_transfer_id(entry.voided_transaction_id), 0)
    )
    return void_transfer(
        voided_tb_transfer_id,
        ids=ids,
        voided_credit=entry.voided_kind == "credit",
        tb_account_id=row.tb_account_id,
        ledger=row.ledger,
        amount_minor=entry.amount_minor,
        attempt=attempt,
    )


def _record_in_registry(
    applied: list[tuple[OutboxEntry, Transfer, int]],
    wallets: dict[WalletKey, WalletAccount | None],
    *,
    ids: IdSpace,
) -> None:
    """Transfer registry rows for what TigerBeetle now holds (idempotent)."""
    transfers = []
    for entry, transfer, timestamp in applied:
        if entry.kind == "void":
            continue
        wallet_row = wallets[entry.key]
        assert wallet_row is not None
        transfers.append(
            transfer_registry.NewTransfer(
                transaction_id=entry.transaction_id,
                wallet=wallet_row,
                kind=entry.kind,
                amount_minor=entry.amount_minor,
                made_by=entry.made_by,
                tb_transfer_id=transfer.id,
                tb_timestamp=timestamp,
                created_at=write_time(entry.created_at),  # MongoDB's, the original write
            )
        )
    with transaction.atomic():
        transfer_registry.record_all(transfers)
        for entry, transfer, _ in applied:
            if entry.kind != "void":
                continue
            wallet_row = wallets[entry.key]
            assert wallet_row is not None
            transfer_registry.record_mirrored_void(
                voided_transaction_id=entry.voided_transaction_id,
                wallet=wallet_row,
                voided_kind=entry.voided_kind,
                amount_minor=entry.amount_minor,
                void_tb_transfer_id=transfer.id,
                voided_tb_transfer_id=ids.transaction_transfer_id(entry.voided_transaction_id),
                voided_by=entry.voided_by,
                void_reason=entry.void_reason,
                voided_at=write_time(entry.created_at),
            )
