"""A wallet's hold events in its TigerBeetle history (`ledger.balance_history`).

A hold is a pending transfer (code 7); its capture posts it and its release voids it (both
inherit code 7 and name it in `pending_id`). Each is a transfer of the wallet's account, so
TigerBeetle answers the balance right after it like any other; the registry's `WalletHold`
names the hold and holds its times (placed: `created_at`, resolved: `resolved_at`).

An expiry is no transfer: TigerBeetle 0.17.9 voids the pending transfer on its own clock at
timestamp + timeout and records no balance row for it (tested on the real server:
`get_account_balances` shows the next transfer's row with `debits_pending` lower, nothing
at the expiry). So an expiry's point is computed: at the hold's expiry timestamp E, the
balance of the last row before E with the amounts of the holds expired since then (E
included) moved from held back to the available credit. A hold the mirror carried from
MongoDB has no timeout in TigerBeetle: its expiry is the void the mirror sent (MongoDB's
expiry), a transfer like a release, told apart by the row's state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tigerbeetle import Transfer, TransferFlags

from domain.history import HistoryPoint, PointKind
from domain.ids import WalletKey, u128_to_hex
from domain.wallets import WalletBalance
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.history import LedgerReads, store_call
from ledger.tb_model import TRANSFER_CODE_HOLD, balance_from_snapshot, history_filter
from registry.models import WalletHold

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Expiry:
    """A hold TigerBeetle expired: its expiry timestamp (ns) and its row."""

    timestamp: int
    row: WalletHold

    def point(self, balance: WalletBalance) -> HistoryPoint:
        return HistoryPoint(
            transaction_id=None,
            kind=PointKind.EXPIRE,
            amount_minor=self.row.amount_minor,
            created_at=self.row.expires_at,
            balance=balance,
            hold_id=self.row.hold_id,
        )


def expiry_timestamp(row: WalletHold) -> int | None:
    """TigerBeetle's timestamp of the hold's expiry (None: TigerBeetle never held it)."""
    if row.tb_timestamp is None:
        return None
    return row.tb_timestamp + row.timeout_s * _NS_PER_S


def expiries(ledger: LedgerReads, registry_pk: int) -> list[Expiry]:
    """The wallet's holds TigerBeetle expired by their timeout (unresolved, past their
    expiry), newest first. A mirrored hold (no timeout) waits for the mirror's void."""
    rows = list(
        WalletHold.objects.filter(
            wallet_id=registry_pk,
            state__in=[WalletHold.State.OPEN, WalletHold.State.EXPIRED],
            resolution_tb_transfer_id_hex="",
            expires_at__lte=datetime.now(UTC),
            tb_timestamp__isnull=False,
        )
    )
    if not rows:
        return []
    pending = store_call(ledger.lookup_transfers, [int(row.tb_transfer_id_hex, 16) for row in rows])
    timed = {u128_to_hex(transfer.id) for transfer in pending if transfer.timeout}
    found = [
        Expiry(timestamp=expiry_timestamp(row) or 0, row=row)
        for row in rows
        if row.tb_transfer_id_hex in timed
    ]
    return sorted(found, key=lambda expiry: -expiry.timestamp)


def balance_after_expiry(
    ledger: LedgerReads,
    key: WalletKey,
    tb_account_id: int,
    expiry: Expiry,
    all_expiries: list[Expiry],
) -> WalletBalance:
    """The balance right after `expiry`: the last row before it, with every hold expired
    between that row and it (itself included) back in the available credit."""
    rows = store_call(
        ledger.get_account_balances,
        history_filter(tb_account_id, limit=1, timestamp_max=expiry.timestamp - 1),
    )
    assert rows, "a hold's pending transfer has a balance row before its expiry"
    before = balance_from_snapshot(key, rows[0])
    freed = sum(
        other.row.amount_minor
        for other in all_expiries
        if rows[0].timestamp < other.timestamp <= expiry.timestamp
    )
    return replace(
        before,
        credit_minor=before.credit_minor + freed,
        held_minor=before.held_minor - freed,
        as_of_tb_timestamp=expiry.timestamp,
    )


def hold_rows(transfers: list[Transfer]) -> dict[str, WalletHold]:
    """The registry rows of the holds these transfers place or resolve, by pending id (hex)."""
    pending_ids = {
        u128_to_hex(transfer.pending_id or transfer.id)
        for transfer in transfers
        if transfer.code == TRANSFER_CODE_HOLD
    }
    if not pending_ids:
        return {}
    return {
        row.tb_transfer_id_hex: row
        for row in WalletHold.objects.filter(tb_transfer_id_hex__in=pending_ids)
    }


def hold_point(
    transfer: Transfer, rows: dict[str, WalletHold], balance: WalletBalance
) -> HistoryPoint | None:
    """The hold event a code-7 transfer is (None: not one the registry names)."""
    if transfer.code != TRANSFER_CODE_HOLD:
        return None
    row = rows.get(u128_to_hex(transfer.pending_id or transfer.id))
    if row is None:
        return None
    moment: datetime | None
    if transfer.flags & TransferFlags.PENDING:
        kind, amount_minor, moment = PointKind.HOLD, transfer.amount, row.created_at
    elif transfer.flags & TransferFlags.POST_PENDING_TRANSFER:
        kind, amount_minor, moment = PointKind.CAPTURE, transfer.amount, row.resolved_at
    elif transfer.flags & TransferFlags.VOID_PENDING_TRANSFER:
        expired = row.state == WalletHold.State.EXPIRED  # the mirror's void of an expiry
        kind = PointKind.EXPIRE if expired else PointKind.RELEASE
        amount_minor, moment = row.amount_minor, row.resolved_at
    else:
        return None
    if moment is None:  # resolved in TigerBeetle, the row not yet repaired: no point yet
        return None
    return HistoryPoint(
        transaction_id=None,
        kind=kind,
        amount_minor=amount_minor,
        created_at=moment,
        balance=balance,
        hold_id=row.hold_id,
    )


def _expiry_event_timestamp(ledger: LedgerReads, row: WalletHold) -> int | None:
    """When TigerBeetle expired the hold: at timestamp + timeout; a mirrored hold (no
    timeout) when the mirror's void (code 7, naming it in pending_id) took it."""
    if row.tb_timestamp is None:
        return None
    pending_id = int(row.tb_transfer_id_hex, 16)
    found = store_call(ledger.lookup_transfers, [pending_id])
    if not found:
        return None
    if found[0].timeout:
        return expiry_timestamp(row)
    later = store_call(
        ledger.get_account_transfers,
        replace(
            history_filter(
                found[0].debit_account_id,
                limit=BATCH_EVENTS_MAX,
                timestamp_min=row.tb_timestamp + 1,
                newest_first=False,
            ),
            code=TRANSFER_CODE_HOLD,
        ),
    )
    voids = [transfer for transfer in later if transfer.pending_id == pending_id]
    return voids[0].timestamp if voids else None


def hold_event_timestamp(ledger: LedgerReads, row: WalletHold, kind: PointKind) -> int | None:
    """TigerBeetle's timestamp of one of the hold's events (None: it has none)."""
    if kind == PointKind.HOLD:
        return row.tb_timestamp
    resolution = row.resolution_tb_transfer_id_hex
    if not resolution:
        expired = kind == PointKind.EXPIRE and row.expires_at <= datetime.now(UTC)
        return _expiry_event_timestamp(ledger, row) if expired else None
    found = store_call(ledger.lookup_transfers, [int(resolution, 16)])
    if not found:
        return None
    if found[0].flags & TransferFlags.POST_PENDING_TRANSFER:
        event = PointKind.CAPTURE
    else:
        expired = row.state == WalletHold.State.EXPIRED
        event = PointKind.EXPIRE if expired else PointKind.RELEASE
    return found[0].timestamp if event == kind else None
