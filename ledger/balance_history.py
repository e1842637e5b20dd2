"""A wallet's balance history from TigerBeetle, as the API answers it (`domain.history`).

Wallet accounts keep their history (flag `history`), so TigerBeetle answers, for each
transfer of the account, the balance right after it (get_account_balances): read with the
transfers themselves (get_account_transfers, the same filter), newest first, a batch at a
time. The registry names each transfer: a credit's or debit's row by its transfer id, a
void's by its void transfer id; and it holds each one's time as every store tells it (the
original write's, MongoDB's for a mirrored one). Limit bookkeeping (reservations, older
probes) and any transfer the registry does not name are no points. A wallet imported by
the backfill starts with one opening-balance point (its opening pair, code 4): TigerBeetle
holds no transfer for what MongoDB logged before the import. Hold events (placed, captured,
released: transfers of code 7; expired: no transfer, computed) are `ledger.hold_history`'s.

Time bounds are on those times; TigerBeetle's timestamps follow the same order, so the
registry turns `to` into a timestamp bound and the scan stops at the first point older than
`from`. Errors keep the stores' contract: StoreUnavailable, WalletNotFound, InvalidCursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Max, Min
from tigerbeetle import AccountBalance, AccountFilter, AccountFilterFlags, Transfer

from domain import errors
from domain.history import HistoryPage, HistoryPoint, HistoryQuery, PointKind, PointRef
from domain.ids import IdSpace, WalletKey, u128_to_hex
from domain.wallets import WalletBalance
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.history import LedgerReads, registered_wallet, store_call, transfer_timestamps
from ledger.hold_history import (
    Expiry,
    balance_after_expiry,
    expiries,
    hold_event_timestamp,
    hold_point,
    hold_rows,
)
from ledger.tb_model import (
    TRANSFER_CODE_CREDIT,
    TRANSFER_CODE_DEBIT,
    TRANSFER_CODE_OPENING_BALANCE,
    TRANSFER_CODE_VOID,
    balance_from_snapshot,
    history_filter,
)
from registry.accounts import RegisteredAccount
from registry.models import WalletHold, WalletTransfer

# However long the wallet's history, one request reads at most this many batches of it. A page
# needs more only when the points between the cursor and `from` are mostly no points (limit
# bookkeeping, transfers the registry does not name): the bound ends such a page early.
SCAN_BATCHES_MAX = 64
_TRANSACTION_CODES = (TRANSFER_CODE_CREDIT, TRANSFER_CODE_DEBIT)


@dataclass
class _Scan:
    """One request's walk down the account's history."""

    query: HistoryQuery
    registered: RegisteredAccount
    found: list[HistoryPoint]
    ledger: LedgerReads
    all_expiries: list[Expiry]
    upcoming_expiries: list[Expiry]  # below the scan's bound, not yet taken, newest first
    opening_seen: bool = False
    done: bool = False

    def take(self, point: HistoryPoint) -> None:
        if self.query.below_range(point.created_at):
            self.done = True
        elif self.query.within(point.created_at):
            self.found.append(point)
            self.done = len(self.found) > self.query.limit

    def take_expiries_after(self, timestamp: int) -> None:
        """The expiries newer than `timestamp` (0: all left), newest first."""
        while not self.done and self.upcoming_expiries:
            expiry = self.upcoming_expiries[0]
            if expiry.timestamp <= timestamp:
                return
            self.upcoming_expiries.pop(0)
            balance = balance_after_expiry(
                self.ledger,
                self.query.key,
                self.registered.tb_account_id,
                expiry,
                self.all_expiries,
            )
            self.take(expiry.point(balance))


def wallet_history(ledger: LedgerReads, query: HistoryQuery, *, ids: IdSpace) -> HistoryPage:
    """The page of the wallet's history `query` asks for. Raises WalletNotFound for an
    unregistered wallet, InvalidCursor for a cursor naming no point of it, StoreUnavailable
    when the ledger does not answer."""
    key = query.key
    registered = registered_wallet(key)
    timestamp_max = _upper_bound(ledger, registered, query, ids)
    all_expiries = expiries(ledger, registered.registry_pk, ids)
    scan = _Scan(
        query=query,
        registered=registered,
        found=[],
        ledger=ledger,
        all_expiries=all_expiries,
        upcoming_expiries=[
            expiry
            for expiry in all_expiries
            if not timestamp_max or expiry.timestamp <= timestamp_max
        ],
    )
    batch = min(3 * (query.limit + 1) + 2, BATCH_EVENTS_MAX)  # room for the bookkeeping
    for _ in range(SCAN_BATCHES_MAX):
        transfers = store_call(
            ledger.get_account_transfers,
            history_filter(registered.tb_account_id, limit=batch, timestamp_max=timestamp_max),
        )
        if not transfers:
            scan.take_expiries_after(0)
            break
        snapshots = store_call(
            ledger.get_account_balances,
            history_filter(
                registered.tb_account_id,
                limit=batch,
                timestamp_min=transfers[-1].timestamp,
                timestamp_max=transfers[0].timestamp,
            ),
        )
        _scan_batch(scan, key, transfers, {s.timestamp: s for s in snapshots})
        if len(transfers) < batch:
            scan.take_expiries_after(0)
        if scan.done or len(transfers) < batch:
            break
        timestamp_max = transfers[-1].timestamp - 1
    return HistoryPage.of(scan.found, query)


def _upper_bound(
    ledger: LedgerReads, registered: RegisteredAccount, query: HistoryQuery, ids: IdSpace
) -> int:
    """TigerBeetle's timestamp bound (inclusive, 0 for none) of the points to read: below
    the cursor's point, and below the first transaction written at or after `to`."""
    bounds = []
    if query.after is not None:
        bounds.append(_timestamp_of_point(ledger, registered, query.after, ids) - 1)
    if query.to_time is not None:
        first_after = (
            WalletTransfer.objects.filter(
                wallet_id=registered.registry_pk,
                created_at__gte=query.to_time,
                tb_timestamp__isnull=False,
            )
            .aggregate(first=Min("tb_timestamp"))
            .get("first")
        )
        if first_after is not None:
            bounds.append(first_after - 1)
    return min(bounds) if bounds else 0


def _timestamp_of_point(
    ledger: LedgerReads, registered: RegisteredAccount, ref: PointRef, ids: IdSpace
) -> int:
    if ref.hold_event is not None:
        hold = WalletHold.objects.filter(
            hold_id=ref.transaction_id, wallet_id=registered.registry_pk
        ).first()
        event_timestamp = hold and hold_event_timestamp(ledger, hold, ref.hold_event, ids)
        if not event_timestamp:
            raise errors.InvalidCursor("The cursor names no point of this wallet's history.")
        return event_timestamp
    row = (
        WalletTransfer.objects.filter(
            transaction_id=ref.transaction_id, wallet_id=registered.registry_pk
        )
        .exclude(state=WalletTransfer.State.FAILED)
        .first()
    )
    if row is None or (ref.void and row.state != WalletTransfer.State.VOIDED):
        raise errors.InvalidCursor("The cursor names no point of this wallet's history.")
    if ref.void:
        timestamp = _void_timestamp(ledger, registered, row)
    else:
        timestamp = transfer_timestamps(ledger, [row.tb_transfer_id]).get(row.tb_transfer_id)
    if timestamp is None:  # registered by the backfill: in the opening balance, no transfer
        raise errors.InvalidCursor("The cursor names a transaction before the wallet's import.")
    return timestamp


def _void_timestamp(
    ledger: LedgerReads, registered: RegisteredAccount, row: WalletTransfer
) -> int | None:
    """The timestamp of the void transfer naming the row's transfer (user_data_128), if any."""
    voids = store_call(
        ledger.get_account_transfers,
        AccountFilter(
            account_id=registered.tb_account_id,
            user_data_128=row.tb_transfer_id,
            user_data_64=0,
            user_data_32=0,
            code=TRANSFER_CODE_VOID,
            timestamp_min=0,
            timestamp_max=0,
            limit=1,
            flags=AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS,
        ),
    )
    return voids[0].timestamp if voids else None


def _scan_batch(
    scan: _Scan, key: WalletKey, transfers: list[Transfer], snapshots: dict[int, AccountBalance]
) -> None:
    """The batch's points, in order, into the scan (until it is done)."""
    # A transaction's row by its transfer id: a void's transfer names it in user_data_128 (the
    # row's void id may be unset: one the backfill registered as voided already).
    hex_ids = [
        u128_to_hex(transfer.user_data_128 if transfer.code == TRANSFER_CODE_VOID else transfer.id)
        for transfer in transfers
    ]
    rows = {
        row.tb_transfer_id_hex: row
        for row in WalletTransfer.objects.filter(tb_transfer_id_hex__in=set(hex_ids))
    }
    holds = hold_rows(transfers)
    for transfer, hex_id in zip(transfers, hex_ids, strict=True):
        scan.take_expiries_after(transfer.timestamp)
        if scan.done:
            return
        snapshot = snapshots.get(transfer.timestamp)
        if snapshot is None:
            raise errors.StoreUnavailable("TigerBeetle has no balance snapshot of a transfer.")
        balance = balance_from_snapshot(key, snapshot)
        point = None
        row = rows.get(hex_id)
        if transfer.code in _TRANSACTION_CODES and row is not None:
            point = HistoryPoint(
                transaction_id=row.transaction_id,
                kind=PointKind(row.kind),
                amount_minor=transfer.amount,
                created_at=row.created_at,
                balance=balance,
            )
        elif transfer.code == TRANSFER_CODE_VOID and row is not None and row.voided_at:
            point = HistoryPoint(
                transaction_id=row.transaction_id,
                kind=PointKind.VOID,
                amount_minor=transfer.amount,
                created_at=row.voided_at,
                balance=balance,
            )
        elif transfer.code == TRANSFER_CODE_OPENING_BALANCE and not scan.opening_seen:
            scan.opening_seen = True  # the pair's newer half: the balance after both
            point = _opening_point(scan.registered, transfer, balance)
        else:
            point = hold_point(transfer, holds, balance)
        if point is not None:
            scan.take(point)
        if scan.done:
            return


def _opening_point(
    registered: RegisteredAccount, transfer: Transfer, balance: WalletBalance
) -> HistoryPoint:
    """The opening balance, timed at the last transaction it stands for (the registry holds
    the ones the backfill covered), or at the wallet's creation when it covered none."""
    covered = (
        WalletTransfer.objects.filter(wallet_id=registered.registry_pk, tb_timestamp__isnull=True)
        .exclude(state=WalletTransfer.State.FAILED)
        .aggregate(created=Max("created_at"), voided=Max("voided_at"))
    )
    created_ms = transfer.user_data_64
    moments = [datetime.fromtimestamp(created_ms / 1000, tz=UTC)]
    moments += [moment for moment in covered.values() if moment is not None]
    return HistoryPoint(
        transaction_id=None,
        kind=PointKind.OPENING_BALANCE,
        amount_minor=None,
        created_at=max(moments),
        balance=balance,
    )
