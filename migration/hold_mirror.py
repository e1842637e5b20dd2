"""The mirror's part for holds: the hold events of MongoDB's transaction log
(ledger.stores.mongo_holds.HoldEventKind, each with the wallet's wallet_seq, so in the
wallet's order with its other writes) as the transfers TigerBeetle takes, and the hold
registry rows that name them.

Why these transfers (docs/holds.md, "Across the migration"): MongoDB is authoritative in phases
1-3, so its expiry rules win. A placed hold is a pending transfer whose timeout is what is left
of MongoDB's expiry when the mirror sends it (at least 1 s), so the cluster voids it by itself
no earlier than MongoDB expires it (up to a second later, as timeouts are whole seconds), and
in phase 4 it expires on the cluster's clock like any hold. MongoDB's expiry is mirrored as a
void, so a debit that MongoDB let spend the freed money is never refused by a cluster whose
timeout has not fired yet; a void of a transfer the cluster already expired answers
`pending_transfer_expired`, which is what the event asked. A capture MongoDB took before its
expiry but mirrored after the cluster's timeout (a mirror lagging past the expiry) is posted
as a plain debit of the captured amount under an id of its own (`tb_model.hold_late_capture`).
Every transfer here is an ordinary one: nothing here is imported, so no imported post or void
of a pending transfer with a timeout (which crashes TigerBeetle 0.17.9) is ever sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from tigerbeetle import CreateTransferStatus, Transfer

from domain.ids import IdSpace, WalletKey
from domain.wallets import time_of_tb_timestamp, write_time
from ledger.batches import LedgerBatches
from ledger.history import transfers_by_id
from ledger.stores.mongo_holds import HoldEventKind
from ledger.tb_model import hold_late_capture, hold_resolution, hold_transfer
from migration.outbox import OutboxEntry
from registry import holds as hold_registry
from registry.models import WalletAccount, WalletHold

PLACE, CAPTURE = HoldEventKind.PLACE, HoldEventKind.CAPTURE
RELEASE, EXPIRE = HoldEventKind.RELEASE, HoldEventKind.EXPIRE
_NS_PER_S = 1_000_000_000
_CREATED = {CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS}
# A place sent again by a later run carries a later timeout: the cluster holds the first one.
_PLACED = {*_CREATED, CreateTransferStatus.EXISTS_WITH_DIFFERENT_TIMEOUT}
# A void of a pending transfer the cluster's timeout already voided: what the event wanted.
_VOIDED = {*_CREATED, CreateTransferStatus.PENDING_TRANSFER_EXPIRED}


def timeout_left_s(expires_at: datetime, *, now: datetime) -> int:
    """What is left of MongoDB's expiry, rounded up to whole seconds, at least 1 (a pending
    transfer with timeout 0 would never expire)."""
    return max(1, math.ceil((expires_at - now).total_seconds()))


def hold_event_transfer(
    entry: OutboxEntry, row: WalletAccount, *, ids: IdSpace, now: datetime
) -> Transfer:
    """The transfer a hold event asks TigerBeetle for (the TigerBeetle store's ids)."""
    pending_id = ids.hold_transfer_id(entry.hold_id)
    if entry.kind == PLACE:
        assert entry.expires_at is not None, "a hold event carries its hold's expiry"
        return hold_transfer(
            entry.hold_id,
            ids=ids,
            tb_account_id=row.tb_account_id,
            ledger=row.ledger,
            amount_minor=entry.amount_minor,
            timeout_s=timeout_left_s(entry.expires_at, now=now),
        )
    if entry.kind == CAPTURE:
        return hold_resolution(pending_id, ids=ids, capture_minor=entry.amount_minor)
    assert entry.kind in (RELEASE, EXPIRE), f"unknown hold event {entry.kind!r}"
    return hold_resolution(pending_id, ids=ids, capture_minor=None)


def hold_event_applied(entry: OutboxEntry, status: CreateTransferStatus) -> bool:
    """Whether TigerBeetle now holds what the event says."""
    if entry.kind == PLACE:
        return status in _PLACED
    if entry.kind == CAPTURE:
        return status in _CREATED
    return status in _VOIDED


def needs_late_capture(entry: OutboxEntry, status: CreateTransferStatus) -> bool:
    """A capture whose pending transfer the cluster's timeout voided first."""
    return entry.kind == CAPTURE and status == CreateTransferStatus.PENDING_TRANSFER_EXPIRED


def late_capture_transfer(entry: OutboxEntry, row: WalletAccount, *, ids: IdSpace) -> Transfer:
    return hold_late_capture(
        ids.hold_transfer_id(entry.hold_id),
        ids=ids,
        tb_account_id=row.tb_account_id,
        ledger=row.ledger,
        amount_minor=entry.amount_minor,
    )


def record_hold_events(
    applied: Sequence[tuple[OutboxEntry, Transfer, int]],
    wallets: dict[WalletKey, WalletAccount | None],
    *,
    ledger: LedgerBatches,
) -> None:
    """The hold registry's rows for the hold events TigerBeetle took, in order (idempotent:
    a row already past a step is left as it is). A place's row carries the cluster's expiry
    (its timestamp + timeout), which phase 4 then goes by."""
    places = [(e, t, ts) for e, t, ts in applied if e.kind == PLACE]
    stored = transfers_by_id(ledger, [t.id for e, t, ts in places if not ts]) if places else {}
    # One query for the rows the other events resolve; a place of this run adds its own.
    rows: dict[str, WalletHold] = {
        row.hold_id: row
        for row in WalletHold.objects.select_related("wallet").filter(
            hold_id__in={e.hold_id for e, _t, _ts in applied if e.kind != PLACE}
        )
    }
    for entry, transfer, timestamp in applied:
        if entry.kind == PLACE:
            wallet = wallets[entry.key]
            assert wallet is not None
            found = stored.get(transfer.id)
            tb_timestamp = timestamp or (int(found.timestamp) if found else 0)
            timeout_s = int(found.timeout) if found else int(transfer.timeout)
            rows[entry.hold_id] = hold_registry.record_placed(
                hold_id=entry.hold_id,
                wallet_pk=wallet.pk,
                amount_minor=entry.amount_minor,
                timeout_s=timeout_s,
                tb_transfer_id=transfer.id,
                tb_timestamp=tb_timestamp or None,
                created_at=write_time(entry.created_at),
                expires_at=time_of_tb_timestamp(tb_timestamp + timeout_s * _NS_PER_S)
                if tb_timestamp
                else write_time(entry.created_at),
                made_by=entry.made_by,
            )
            continue
        row = rows.get(entry.hold_id)
        if row is None or row.state != WalletHold.State.OPEN:
            continue
        if entry.kind == EXPIRE:  # logged at MongoDB's expiry
            hold_registry.mark_expired(row, expired_at=write_time(entry.created_at))
            continue
        hold_registry.mark_resolved(
            row,
            captured_minor=entry.amount_minor if entry.kind == CAPTURE else None,
            resolution_tb_transfer_id=transfer.id,
            resolved_at=write_time(entry.created_at),
            resolved_by=entry.made_by,
            copy_back=False,
        )
