"""The event collector: every money movement the authoritative store recorded, into the
events table, once.

Two change records, each written in the same transaction as the movement it records:
- MongoDB's transaction log (authoritative in phases 0-3): every entry is born with
  `event_pending` (ledger.stores.mongo_documents.EVENT_PENDING); the collector reads a batch
  of those, inserts their events and then unsets the field. A crash between the two re-reads
  the batch, and the events' unique ids make the second insert a no-op.
- The TigerBeetle store's outbox (`registry.StoreMovement`, phase 4): rows written with the
  registry row of each movement, turned into events and deleted in one PostgreSQL
  transaction. TigerBeetle's balance right after each movement is read from its account
  history at the movement's transfer.

A movement has the same event id whichever record it is read from (`IdSpace.event_id`), so a
movement read twice across a phase change (a phase-4 write copied back into MongoDB's log
leaving phase 4) is one event. One collector runs at a time (a PostgreSQL advisory lock held
by its transaction), so the feed's ids are assigned and committed in order: a consumer
reading `after=` its last id never skips an event committed later with a smaller id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from pymongo import UpdateOne

from domain.ids import IdSpace, WalletKey, hex_to_u128
from domain.wallets import WalletBalance
from events.models import Delivery, Event, EventType, Subscription
from events.monitors import save_states, with_crossings
from ledger.backends.base import LedgerBackend
from ledger.history import balance_at, transfer_timestamps
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import AFTER_WALLET_SEQ, EVENT_PENDING, key_of
from registry.models import StoreMovement, WalletHold
from registry.movement_fence import fence_available, wait_for_writes

# An arbitrary constant naming the collector's PostgreSQL advisory lock.
COLLECTOR_LOCK_KEY = 7_101_024
# Log entries unmarked per MongoDB command (point updates by _id).
UNMARK_PER_COMMAND = 100
_HOLD_EVENTS = {
    "hold": EventType.HELD,
    "capture": EventType.CAPTURED,
    "release": EventType.RELEASED,
    "expire": EventType.EXPIRED,
}
_INSUFFICIENT_FUNDS = "insufficient_funds"
SOURCE_MONGODB = "mongodb"
SOURCE_TIGERBEETLE = "tigerbeetle"


@dataclass(frozen=True, kw_only=True)
class Movement:
    """One money movement as a change record holds it."""

    event_type: str
    reference_id: str
    transaction_kind: str
    key: WalletKey
    amount_minor: int
    balance: WalletBalance | None
    actor: str
    occurred_at: datetime
    source: str


@dataclass(frozen=True)
class CollectReport:
    read: int  # movements read from the change records
    inserted: int  # new events (the rest were in the table already)


def movement_of_log_entry(document: dict[str, Any]) -> Movement | None:
    """A MongoDB log entry's movement; None for one that is none (a refusal other than for
    funds)."""
    kind = document.get("kind", "")
    if kind == "void":
        return _logged(
            document,
            event_type=EventType.VOIDED,
            reference_id=document["voided_transaction_id"],
            transaction_kind=document.get("voided_kind", ""),
            actor=document.get("voided_by", ""),
        )
    if kind in _HOLD_EVENTS:
        return _logged(
            document,
            event_type=_HOLD_EVENTS[kind],
            reference_id=document["hold_id"],
            transaction_kind="",
            actor=document.get("made_by", ""),
        )
    assert kind in ("credit", "debit"), f"log entry {document['_id']} of kind {kind!r}"
    event_type = EventType.POSTED  # a voided one's entry too: its void is its own event
    if document.get("state") == "failed":
        if kind != "debit" or document.get("failure_code") != _INSUFFICIENT_FUNDS:
            return None
        event_type = EventType.REFUSED
    return _logged(
        document,
        event_type=event_type,
        reference_id=str(document["_id"]),
        transaction_kind=kind,
        actor=document.get("made_by", ""),
    )


def _logged(
    document: dict[str, Any],
    *,
    event_type: str,
    reference_id: str,
    transaction_kind: str,
    actor: str,
) -> Movement:
    key = key_of(document)
    refused = event_type == EventType.REFUSED
    return Movement(
        event_type=event_type,
        reference_id=reference_id,
        transaction_kind=transaction_kind,
        key=key,
        amount_minor=int(document["amount_minor"]),
        balance=None if refused else _balance_of_entry(key, document.get("balance_after")),
        actor=actor,
        occurred_at=document["created_at"],
        source=SOURCE_MONGODB,
    )


def _balance_of_entry(key: WalletKey, fields: dict[str, int] | None) -> WalletBalance | None:
    if not fields:
        return None
    return WalletBalance(
        key=key,
        credit_minor=int(fields["credit_minor"]),
        debit_minor=int(fields["debit_minor"]),
        historical_credit_minor=int(fields["historical_credit_minor"]),
        held_minor=int(fields.get("held_minor", 0)),
    )


def _log_order(document: dict[str, Any]) -> tuple[datetime, float]:
    """A wallet's entries in the order they were written: by time, then by `wallet_seq`. A
    refused debit takes none; one refused in a batch (the batch's entries share one time)
    falls right after the entry of the wallet_seq it was refused at."""
    if "wallet_seq" in document:
        return document["created_at"], int(document["wallet_seq"])
    return document["created_at"], int(document.get(AFTER_WALLET_SEQ, 0)) + 0.5


class EventCollector:
    """Both change records into the events table; see the module's docstring."""

    def __init__(
        self,
        *,
        mongo: MongoDatabase,
        backend: LedgerBackend,
        ids: IdSpace,
        batch_size: int,
        store_settle_s: float,
    ) -> None:
        assert batch_size > 0
        self.mongo = mongo
        self.backend = backend
        self.ids = ids
        self.batch_size = batch_size
        self.store_settle_s = store_settle_s

    def collect(
        self,
        *,
        tigerbeetle_authoritative: bool,
        max_batches: int,
        learn_hold: Callable[[str], object] | None = None,
    ) -> CollectReport:
        """Drain both records (at most `max_batches` each), the older one first: MongoDB's
        log before the store's outbox in phase 4, the outbox (rows left from a phase 4)
        first otherwise. In phase 4, `learn_hold` first settles open holds past their expiry
        (the store's hold read marks one TigerBeetle's timeout expired, with its outbox row)."""
        if tigerbeetle_authoritative and learn_hold is not None:
            self._learn_due_holds(learn_hold)
        drains = [self._mongo_batch, self._store_batch]
        if not tigerbeetle_authoritative:
            drains.reverse()
        read = inserted = 0
        for drain in drains:
            for _ in range(max_batches):
                batch_read, batch_inserted = drain(settle=tigerbeetle_authoritative)
                read += batch_read
                inserted += batch_inserted
                if batch_read < self.batch_size:
                    break
        return CollectReport(read=read, inserted=inserted)

    def _learn_due_holds(self, learn_hold: Callable[[str], object]) -> None:
        due = WalletHold.objects.filter(
            state=WalletHold.State.OPEN, expires_at__lte=timezone.now()
        ).values_list("hold_id", flat=True)[: self.batch_size]
        for hold_id in due:
            learn_hold(hold_id)

    def _mongo_batch(self, *, settle: bool) -> tuple[int, int]:
        del settle  # MongoDB serialises a wallet's writes: an entry is whole once readable
        log = self.mongo.log()
        with transaction.atomic():
            _lock_collector()
            documents = list(
                log.find({EVENT_PENDING: True})
                .sort("created_at", 1)  # a wallet's entries are logged in time order
                .limit(self.batch_size)
                .batch_size(self.batch_size)
            )
            documents.sort(key=_log_order)
            movements = [m for m in map(movement_of_log_entry, documents) if m is not None]
            inserted = self._insert(movements)
        # After the events committed: a crash before this re-reads them, as no-ops. Point
        # updates by _id in small commands: one update_many of a batch's 500 ids took over
        # MongoDB's socket timeout on a loaded embedded server, and every retry sent it again.
        ids = [document["_id"] for document in documents]
        for start in range(0, len(ids), UNMARK_PER_COMMAND):
            log.bulk_write(
                [
                    UpdateOne({"_id": entry_id}, {"$unset": {EVENT_PENDING: ""}})
                    for entry_id in ids[start : start + UNMARK_PER_COMMAND]
                ],
                ordered=False,
            )
        return len(documents), inserted

    def _store_batch(self, *, settle: bool) -> tuple[int, int]:
        """The store's outbox rows, oldest movement first, each wallet's complete up to the
        latest of its movements read (TigerBeetle's order).

        On PostgreSQL the movement fence (registry.movement_fence) makes it exact: after
        reading a batch, the collector waits for the writes in flight on its wallets, then
        reads their rows again; every row TigerBeetle ordered before one it read is there
        now, and those rows join the batch. Elsewhere (SQLite, development), `settle` takes
        only rows older than `store_settle_s`, so two writes of one wallet whose rows
        committed in another order than TigerBeetle took them are both there to be ordered."""
        fenced = fence_available()
        rows_query = StoreMovement.objects.select_related("wallet")
        if settle and not fenced:
            cutoff = timezone.now() - timedelta(seconds=self.store_settle_s)
            rows_query = rows_query.filter(recorded_at__lte=cutoff)
        with transaction.atomic():
            _lock_collector()
            # Oldest movement first: a batch never holds a wallet's later movement without
            # the earlier ones that settled.
            rows = list(rows_query.order_by("occurred_at", "id")[: self.batch_size])
            if not rows:
                return 0, 0
            timestamps = transfer_timestamps(
                self.backend,
                sorted({hex_to_u128(r.tb_transfer_id_hex) for r in rows if r.tb_transfer_id_hex}),
            )
            if fenced:
                rows, timestamps = self._with_writes_in_flight(rows, timestamps)
            movements = sorted(
                (self._store_movement(row, timestamps) for row in rows),
                key=lambda pair: pair[0],
            )
            inserted = self._insert([movement for _, movement in movements])
            StoreMovement.objects.filter(pk__in=[row.pk for row in rows]).delete()
        return len(rows), inserted

    def _with_writes_in_flight(
        self, rows: list[StoreMovement], timestamps: dict[int, int]
    ) -> tuple[list[StoreMovement], dict[int, int]]:
        """`rows` and every row of their wallets that TigerBeetle ordered before the latest
        of each wallet's movements in `rows`, once the writes in flight on those wallets
        committed (the fence); with the timestamps of all of them."""
        wallet_pks = {row.wallet_id for row in rows}
        wait_for_writes(wallet_pks)
        latest: dict[int, int] = {}
        for row in rows:
            latest[row.wallet_id] = max(latest.get(row.wallet_id, 0), _place(row, timestamps))
        read = {row.pk for row in rows}
        others = [
            row
            for row in StoreMovement.objects.select_related("wallet").filter(
                wallet_id__in=wallet_pks
            )
            if row.pk not in read and (row.tb_transfer_id_hex or row.tb_timestamp)
        ]
        if not others:
            return rows, timestamps
        timestamps = {
            **timestamps,
            **transfer_timestamps(
                self.backend,
                sorted({hex_to_u128(r.tb_transfer_id_hex) for r in others if r.tb_transfer_id_hex}),
            ),
        }
        earlier = [row for row in others if 0 < _place(row, timestamps) <= latest[row.wallet_id]]
        return rows + earlier, timestamps

    def _store_movement(
        self, row: StoreMovement, timestamps: dict[int, int]
    ) -> tuple[tuple[datetime, int], Movement]:
        key = row.wallet.key
        tb_timestamp = (
            timestamps.get(hex_to_u128(row.tb_transfer_id_hex)) if row.tb_transfer_id_hex else None
        )
        balance = None
        if tb_timestamp and row.movement != StoreMovement.Movement.EXPIRED:
            balance = balance_at(
                self.backend, key, tb_account_id=row.wallet.tb_account_id, tb_timestamp=tb_timestamp
            )
        movement = Movement(
            event_type=row.movement,
            reference_id=row.reference_id,
            transaction_kind=row.transaction_kind,
            key=key,
            amount_minor=row.amount_minor,
            balance=balance,
            actor=row.actor,
            occurred_at=row.occurred_at,
            source=SOURCE_TIGERBEETLE,
        )
        return (row.occurred_at, _place(row, timestamps)), movement

    def _insert(self, movements: Sequence[Movement]) -> int:
        """The movements' events not in the table yet, in the order given, each followed by
        the balance monitors' `crossed` events it fires (events/monitors.py), and their
        deliveries to the subscriptions that want them; inside the caller's transaction."""
        by_id = {self.ids.event_id(m.reference_id, event_type=m.event_type): m for m in movements}
        known = set(
            Event.objects.filter(event_id__in=list(by_id)).values_list("event_id", flat=True)
        )
        new = [self._event(event_id, m) for event_id, m in by_id.items() if event_id not in known]
        if not new:
            return 0
        rows, states = with_crossings(new, ids=self.ids)
        Event.objects.bulk_create(rows)
        save_states(states)
        created = list(Event.objects.filter(event_id__in=[e.event_id for e in rows]).order_by("id"))
        fan_out(created, Subscription.objects.filter(active=True))
        return len(created)

    def _event(self, event_id: str, movement: Movement) -> Event:
        key, balance = movement.key, movement.balance
        return Event(
            event_id=event_id,
            type=movement.event_type,
            reference_id=movement.reference_id,
            transaction_kind=movement.transaction_kind,
            wallet_ref=self.ids.wallet_ref(key),
            client_id=key.client_id,
            country=key.country,
            currency=key.currency,
            issuer=key.issuer or "",
            amount_minor=movement.amount_minor,
            available_minor=balance.credit_minor if balance else None,
            held_minor=balance.held_minor if balance else None,
            debit_minor=balance.debit_minor if balance else None,
            historical_credit_minor=balance.historical_credit_minor if balance else None,
            actor=movement.actor,
            occurred_at=movement.occurred_at,
            source=movement.source,
        )


def fan_out(events: Iterable[Event], subscriptions: Iterable[Subscription]) -> int:
    """A pending delivery of each event to each subscription that wants its type (one
    already there is left as it is)."""
    wanted = list(subscriptions)
    deliveries = [
        Delivery(subscription=subscription, event=event, wallet_ref=event.wallet_ref)
        for event in events
        for subscription in wanted
        if subscription.wants(event.type)
    ]
    Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    return len(deliveries)


def _place(row: StoreMovement, timestamps: dict[int, int]) -> int:
    """The row's place in TigerBeetle's order: its transfer's timestamp, or the one
    TigerBeetle gave a refused debit; 0 when it has neither (a hold TigerBeetle's timeout
    expired)."""
    if row.tb_transfer_id_hex:
        return timestamps.get(hex_to_u128(row.tb_transfer_id_hex), 0)
    return row.tb_timestamp or 0


def _lock_collector() -> None:
    """One collector at a time, until the caller's transaction ends (PostgreSQL; SQLite
    serialises every writer anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [COLLECTOR_LOCK_KEY])
