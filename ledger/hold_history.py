"""A wallet's hold events in its TigerBeetle history (`ledger.balance_history`).

A hold is a pending transfer (code 7); its capture posts it and its release voids it (both
inherit code 7 and name it in `pending_id`). Each is a transfer of the wallet's account, so
TigerBeetle answers the balance right after it like any other; the registry's `WalletHold`
names the hold and holds its times (placed: `created_at`, resolved: `resolved_at`).

An expiry by the pending transfer's timeout is no transfer: TigerBeetle 0.17.9 voids it on
its own clock at timestamp + timeout and records no balance row for it (tested on the real server:
`get_account_balances` shows the next transfer's row with `debits_pending` lower, nothing
at the expiry). So an expiry's point is computed: at the hold's expiry timestamp E, the
balance of the last row before E with the amounts of the holds expired since then (E
included) moved from held back to the available credit. A hold the mirror carried from
MongoDB may instead be voided by the mirror when MongoDB expired it (under the hold's
resolution id, as a release): that void is the expiry's point, told apart from a release by
the row's state; a pending transfer voided so is never also counted as expired by timeout.
A capture the mirror carried after the cluster's timeout voided the pending transfer is a
plain code-7 debit (`tb_model.hold_late_capture`), the row's resolution: its capture point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tigerbeetle import Transfer, TransferFlags

from domain.history import HistoryPoint, PointKind
from domain.ids import IdSpace, WalletKey, u128_to_hex
from domain.wallets import WalletBalance
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
            # MongoDB's expiry when the mirror carried one (the cluster's timeout, a whole
            # second, may come up to a second later), else the cluster's.
            created_at=self.row.resolved_at or self.row.expires_at,
            balance=balance,
            hold_id=self.row.hold_id,
        )


def _expired_by_timeout(
    ledger: LedgerReads, rows: list[WalletHold], ids: IdSpace
) -> dict[str, int]:
    """Of these unresolved rows past their expiry, those TigerBeetle expired by the pending
    transfer's own timeout, with the expiry's timestamp (pending timestamp + timeout), by
    pending id (hex). Left out: a pending transfer something voided (the mirror's void of
    an expiry MongoDB decided, which is a transfer and so a point of its own), or one without
    a timeout (it waits for that void). One lookup for all of them."""
    pending_ids = [int(row.tb_transfer_id_hex, 16) for row in rows]
    voids = [ids.hold_resolution_transfer_id(pending_id) for pending_id in pending_ids]
    found = {
        transfer.id: transfer
        for transfer in store_call(ledger.lookup_transfers, pending_ids + voids)
    }
    expired: dict[str, int] = {}
    for pending_id, void_id in zip(pending_ids, voids, strict=True):
        pending = found.get(pending_id)
        if pending is not None and pending.timeout and void_id not in found:
            expired[u128_to_hex(pending_id)] = pending.timestamp + pending.timeout * _NS_PER_S
    return expired


def _unresolved_past_expiry(**conditions: object) -> list[WalletHold]:
    """Holds neither captured nor released (the registry's view) past their expiry."""
    return list(
        WalletHold.objects.filter(
            state__in=[WalletHold.State.OPEN, WalletHold.State.EXPIRED],
            resolution_tb_transfer_id_hex="",
            expires_at__lte=datetime.now(UTC),
            tb_timestamp__isnull=False,
            **conditions,
        )
    )


def expiries(ledger: LedgerReads, registry_pk: int, ids: IdSpace) -> list[Expiry]:
    """The wallet's holds TigerBeetle expired by their timeout, newest first."""
    rows = _unresolved_past_expiry(wallet_id=registry_pk)
    if not rows:
        return []
    expired = _expired_by_timeout(ledger, rows, ids)
    found = [
        Expiry(timestamp=expired[row.tb_transfer_id_hex], row=row)
        for row in rows
        if row.tb_transfer_id_hex in expired
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


_TWO_PHASE = (
    TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
)


def _is_late_capture(transfer: Transfer) -> bool:
    """A plain code-7 debit: the mirror's capture of a hold the cluster's timeout voided
    first (`tb_model.hold_late_capture`), named by its row's resolution id."""
    return transfer.code == TRANSFER_CODE_HOLD and not transfer.flags & _TWO_PHASE


def _hold_key(transfer: Transfer) -> str:
    """What names the transfer's hold row: its pending id (hex), or a late capture's own id."""
    return u128_to_hex(
        transfer.id if _is_late_capture(transfer) else transfer.pending_id or transfer.id
    )


def hold_rows(transfers: list[Transfer]) -> dict[str, WalletHold]:
    """The registry rows of the holds these transfers place or resolve, by pending id (hex),
    and a late capture's row by its own id (the row's resolution id)."""
    holds = [transfer for transfer in transfers if transfer.code == TRANSFER_CODE_HOLD]
    pending_ids = {_hold_key(t) for t in holds if not _is_late_capture(t)}
    late_ids = {_hold_key(t) for t in holds if _is_late_capture(t)}
    found: dict[str, WalletHold] = {}
    if pending_ids:
        for row in WalletHold.objects.filter(tb_transfer_id_hex__in=pending_ids):
            found[row.tb_transfer_id_hex] = row
    if late_ids:
        for row in WalletHold.objects.filter(resolution_tb_transfer_id_hex__in=late_ids):
            found[row.resolution_tb_transfer_id_hex] = row
    return found


def hold_point(
    transfer: Transfer, rows: dict[str, WalletHold], balance: WalletBalance
) -> HistoryPoint | None:
    """The hold event a code-7 transfer is (None: not one the registry names)."""
    if transfer.code != TRANSFER_CODE_HOLD:
        return None
    row = rows.get(_hold_key(transfer))
    if row is None:
        return None
    moment: datetime | None
    if _is_late_capture(transfer):
        kind, amount_minor, moment = PointKind.CAPTURE, transfer.amount, row.resolved_at
    elif transfer.flags & TransferFlags.PENDING:
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


def hold_event_timestamp(
    ledger: LedgerReads, row: WalletHold, kind: PointKind, ids: IdSpace
) -> int | None:
    """TigerBeetle's timestamp of one of the hold's events (None: it has none)."""
    if kind == PointKind.HOLD:
        return row.tb_timestamp
    unresolved = row.state in (WalletHold.State.OPEN, WalletHold.State.EXPIRED) and not (
        row.resolution_tb_transfer_id_hex
    )
    if kind == PointKind.EXPIRE and unresolved and row.expires_at <= datetime.now(UTC):
        by_timeout = _expired_by_timeout(ledger, [row], ids).get(row.tb_transfer_id_hex)
        if by_timeout is not None:
            return by_timeout
    pending_id = int(row.tb_transfer_id_hex, 16)
    resolution = row.resolution_tb_transfer_id_hex
    resolution_id = (
        int(resolution, 16) if resolution else ids.hold_resolution_transfer_id(pending_id)
    )
    found = store_call(ledger.lookup_transfers, [resolution_id])
    if found and _is_late_capture(found[0]):
        return found[0].timestamp if kind == PointKind.CAPTURE else None
    if not found or found[0].pending_id != pending_id:
        return None
    if found[0].flags & TransferFlags.POST_PENDING_TRANSFER:
        event = PointKind.CAPTURE
    else:
        expired = row.state == WalletHold.State.EXPIRED
        event = PointKind.EXPIRE if expired else PointKind.RELEASE
    return found[0].timestamp if event == kind else None
