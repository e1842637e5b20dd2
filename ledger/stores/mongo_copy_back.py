"""Events TigerBeetle took alone (phase 4) copied back into MongoDB on a step back, in one
MongoDB transaction per batch instead of a transaction each: credits and debits, voids,
holds it placed alone, and the captures and releases it took alone.

The step back's pause waits for what the passes before it could not copy; a copy of its own
costs some 30-50 ms on a server that also carries client traffic, so at 100 writes/s the
passes never caught up, and the wallets with a hold or a void among their events went one
event at a time (about 20 a second: docs/benchmarks.md). A batch reads its ids' entries,
its holds and its wallets at once, walks its events in TigerBeetle's order in memory, and
writes once, as `ledger.stores.mongo_batch` does for a client's batch.

It must leave exactly what its events copied one by one leave (`MongoWalletStore`'s
single copies: `void_transaction(mirror=False)`, `MongoHoldCopyBack`). Each of those first
expires its wallet's holds due by its own time; so a batch in which a wallet's open hold
falls due after the wallet's first event and by a later one, or in which any event would
be refused or is not what the store holds (TigerBeetle took them all, so a refusal is a
difference the single copy reports), is not taken: the caller copies those events one by
one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pymongo
from pymongo.client_session import ClientSession

from domain.holds import Hold, HoldState
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import TransactionKind, TransactionState, write_time
from ledger.stores.mongo_batch import batch_wallets, find_in, wallet_seqs, write_batch
from ledger.stores.mongo_batch_holds import WRITES_PER_COMMAND, BatchWallet
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import (
    MONGO_KEY_FIELDS,
    PostedVoid,
    PostedWrite,
    key_of,
    known_answer,
    posted_entry,
    void_entry,
)
from ledger.stores.mongo_holds import HoldEventKind, expire_due, hold_document, hold_event_entry
from ledger.stores.mongo_wallets import moved_since_read

if TYPE_CHECKING:
    from ledger.stores.mongo_store import MongoWalletStore


@dataclass(frozen=True)
class CopiedWrite:
    """A credit or debit TigerBeetle took alone, at its time there (`created_at`)."""

    key: WalletKey
    kind: TransactionKind
    amount_minor: int
    transaction_id: str
    created_at: datetime
    made_by: str

    def __post_init__(self) -> None:
        assert self.kind in (TransactionKind.CREDIT, TransactionKind.DEBIT), self.kind
        assert self.amount_minor > 0, "a copied write moves a positive amount"

    @property
    def at(self) -> datetime:
        return self.created_at


@dataclass(frozen=True)
class CopiedVoid:
    """A void TigerBeetle took alone of a credit or debit of `key`, at its time there."""

    key: WalletKey
    transaction_id: str  # the voided transaction's
    voided_by: str
    reason: str
    voided_at: datetime

    @property
    def at(self) -> datetime:
        return self.voided_at


@dataclass(frozen=True)
class CopiedHoldEvent:
    """A hold TigerBeetle placed alone (`placed`), or its capture or release of a hold (the
    hold as TigerBeetle's registry has it)."""

    hold: Hold
    placed: bool

    @property
    def key(self) -> WalletKey:
        return self.hold.key

    @property
    def at(self) -> datetime:
        if self.placed:
            return self.hold.created_at
        return self.hold.resolved_at or self.hold.created_at


CopiedEvent = CopiedWrite | CopiedVoid | CopiedHoldEvent


class NotOneBatch(Exception):
    """The events cannot be copied as one batch and leave what their single copies leave
    (a hold due among a wallet's events, an event MongoDB would refuse or that conflicts
    with what it holds): nothing was written; copy them one by one."""


def copy_back_events(store: MongoWalletStore, events: Sequence[CopiedEvent]) -> int:
    """`events` (in TigerBeetle's order) into MongoDB in one transaction, each logged as
    copied back; how many log entries were new (an event MongoDB already holds alike is a
    replay). NotOneBatch when the batch would not leave what single copies leave;
    StoreUnavailable (nothing written) when MongoDB fails."""
    assert events, "a batch copies at least one event"
    database = store.database
    client_ids = sorted({event.key.client_id for event in events})

    def marks() -> object:
        return wallet_seqs(database, client_ids)

    def apply(session: ClientSession) -> int:
        return _CopyBackBatch(store, session, events).apply()

    return database.guarded(lambda: database.transaction(apply, wallet_mark=marks))


class _CopyBackBatch:
    """One attempt at a batch (a transaction that goes again starts a new one): read,
    walked in memory, written once."""

    def __init__(
        self, store: MongoWalletStore, session: ClientSession, events: Sequence[CopiedEvent]
    ) -> None:
        self._store = store
        self._database = store.database
        self._session = session
        self._events = events
        self._now = datetime.now(UTC)
        self._wallets: dict[WalletKey, BatchWallet] = {}
        self._entries: list[dict[str, Any]] = []  # new log entries, in the batch's order
        self._logged: dict[str, dict[str, Any]] = {}  # entries by id: read, or new here
        self._new_ids: set[str] = set()
        self._voided: list[tuple[str, dict[str, Any]]] = []  # entries read, now voided
        self._holds: dict[str, dict[str, Any]] = {}  # hold documents by id: read, or new here
        self._new_holds: dict[str, dict[str, Any]] = {}
        self._resolved: list[tuple[str, dict[str, Any]]] = []  # holds read, now resolved
        # Open holds of each wallet that fall due after its first event: by hold id.
        self._due: dict[WalletKey, dict[str, datetime]] = {}

    def apply(self) -> int:
        self._read_holds()
        ids = [
            event.transaction_id
            for event in self._events
            if isinstance(event, CopiedWrite | CopiedVoid)
        ]
        self._logged = {  # an expiry changes no entry but its own
            entry["_id"]: entry
            for entry in find_in(self._database.log(), "_id", ids, session=self._session)
        }
        self._expire_due_first()
        keys = list(dict.fromkeys(event.key for event in self._events))
        self._wallets = batch_wallets(self._database, self._session, keys)
        for event in self._events:
            self._walk(event)
        self._write()
        return len(self._entries)

    # --- reads ------------------------------------------------------------------------------

    def _read_holds(self) -> None:
        ids = [event.hold.hold_id for event in self._events if isinstance(event, CopiedHoldEvent)]
        self._holds = {
            document["_id"]: document
            for document in find_in(self._database.holds(), "_id", ids, session=self._session)
        }

    def _expire_due_first(self) -> None:
        """Each wallet's holds due by its first event's time expire first, as that event's
        single copy expires them (NotOneBatch when that copy expires none); those due after
        it but by its last event's time are watched while the batch walks (`_due`). One
        query finds the few wallets with any."""
        first: dict[WalletKey, CopiedEvent] = {}
        last_at: dict[WalletKey, datetime] = {}
        for event in self._events:
            first.setdefault(event.key, event)
            last_at[event.key] = self._time_of(event)
        expired = False
        for key, expiries in _open_due_by(
            self._database, self._session, latest=max(last_at.values()), keys=first
        ).items():
            first_at = self._time_of(first[key])
            if any(expiry <= first_at for expiry in expiries.values()):
                if not self._expires_first(first[key]):
                    raise NotOneBatch(f"a hold of {key.describe()} is due before its first event")
                expire_due(
                    self._database,
                    key,
                    now=first_at,
                    session=self._session,
                    marks=self._store.marks,
                )
                expired = True
            later = {hold_id: at for hold_id, at in expiries.items() if at > first_at}
            if later:
                self._due[key] = later
        if expired:
            self._read_holds()  # a hold expired first is no longer open

    def _time_of(self, event: CopiedEvent) -> datetime:
        """The time up to which its single copy expires the wallet's holds first."""
        return min(event.at, self._now)

    def _expires_first(self, event: CopiedEvent) -> bool:
        """Whether the event's single copy expires its wallet's due holds first: not when
        it answers before (a write, placement or void MongoDB has already; a resolution of
        a hold it lacks or holds no longer open), nor for a resolution without a time."""
        if isinstance(event, CopiedWrite):
            return event.transaction_id not in self._logged
        if isinstance(event, CopiedVoid):
            entry = self._logged.get(event.transaction_id)
            return entry is None or entry["state"] == TransactionState.POSTED.value
        known = self._holds.get(event.hold.hold_id)
        if event.placed:
            return known is None
        return (
            known is not None
            and known["state"] == HoldState.OPEN.value
            and event.hold.resolved_at is not None
        )

    # --- the walk ---------------------------------------------------------------------------

    def _walk(self, event: CopiedEvent) -> None:
        at = self._time_of(event)
        if any(expiry <= at for expiry in self._due.get(event.key, {}).values()):
            raise NotOneBatch(f"a hold of {event.key.describe()} falls due among its events")
        if isinstance(event, CopiedWrite):
            self._copy_write(event)
        elif isinstance(event, CopiedVoid):
            self._copy_void(event)
        elif event.placed:
            self._copy_placement(event.hold)
        else:
            self._copy_resolution(event.hold)

    def _copy_write(self, write: CopiedWrite) -> None:
        """The write on its wallet as it stands, logged as its single copy logs it; a replay
        when MongoDB holds it alike."""
        key, amount_minor = write.key, write.amount_minor
        known = self._logged.get(write.transaction_id)
        if known is not None:
            if isinstance(known_answer(known, write.kind, key, amount_minor), Exception):
                raise NotOneBatch(f"{write.transaction_id!r} conflicts with MongoDB's entry of it")
            return
        wallet = self._wallets[key]
        if write.kind is TransactionKind.CREDIT:
            if wallet.historical + amount_minor > BALANCE_MINOR_MAX:
                raise NotOneBatch(f"{write.transaction_id!r} would pass the balance limit")
            wallet.credit += amount_minor
            wallet.historical += amount_minor
        else:
            if not wallet.exists() or wallet.credit - wallet.held < amount_minor:
                raise NotOneBatch(f"{write.transaction_id!r} would be refused by MongoDB")
            wallet.credit -= amount_minor
            wallet.debit += amount_minor
        self._next(wallet)
        posted = PostedWrite(
            write.transaction_id,
            write.kind,
            key,
            amount_minor,
            write.made_by,
            write_time(write.created_at),
        )
        entry = posted_entry(
            posted,
            balance=wallet.balance(),
            wallet_seq=wallet.seq,
            mirror_state=self._store.marks.copied_back,
        )
        self._entries.append(entry)
        self._logged[write.transaction_id] = entry
        self._new_ids.add(write.transaction_id)

    def _copy_void(self, void: CopiedVoid) -> None:
        """The voided entry's amount reversed on its wallet, the entry marked voided and the
        void logged, as the single copy does; nothing when MongoDB has it voided already."""
        entry = self._logged.get(void.transaction_id)
        if entry is None or entry["state"] == TransactionState.FAILED:
            raise NotOneBatch(f"MongoDB has no posted transaction {void.transaction_id!r}")
        if entry["state"] == TransactionState.VOIDED:
            return  # copied by an earlier run: its single copy is refused as already voided
        if key_of(entry) != void.key:
            raise NotOneBatch(f"{void.transaction_id!r} is another wallet's in MongoDB")
        wallet = self._wallets[void.key]
        amount_minor = int(entry["amount_minor"])
        if entry["kind"] == TransactionKind.CREDIT:
            if not wallet.exists() or wallet.credit - wallet.held < amount_minor:
                raise NotOneBatch(f"voiding {void.transaction_id!r} would overdraw its wallet")
            wallet.credit -= amount_minor
            wallet.debit += amount_minor
        else:
            if wallet.historical + amount_minor > BALANCE_MINOR_MAX:
                raise NotOneBatch(f"voiding {void.transaction_id!r} would pass the balance limit")
            wallet.credit += amount_minor
            wallet.historical += amount_minor
        self._next(wallet)
        posted = PostedVoid(
            entry,
            voided_by=void.voided_by,
            reason=void.reason,
            voided_at=write_time(void.voided_at),
        )
        self._entries.append(
            void_entry(
                posted,
                balance=wallet.balance(),
                wallet_seq=wallet.seq,
                mirror_state=self._store.marks.copied_back,
            )
        )
        if void.transaction_id not in self._new_ids:
            self._voided.append((void.transaction_id, posted.fields))
        entry.update(posted.fields)  # a write new in this batch is inserted voided

    def _copy_placement(self, hold: Hold) -> None:
        """A hold TigerBeetle placed alone: open, with the cluster's expiry, its amount held
        (`MongoHoldCopyBack.copy_back_placement`); nothing when MongoDB has it."""
        if hold.hold_id in self._holds:
            return
        wallet = self._wallets[hold.key]
        if not wallet.exists():
            raise NotOneBatch(f"hold {hold.hold_id!r} is on a wallet MongoDB lacks")
        document = self._new_hold(hold, expires_at=hold.expires_at)
        wallet.held += hold.amount_minor
        self._log_hold(
            wallet,
            HoldEventKind.PLACE,
            hold_id=hold.hold_id,
            amount_minor=hold.amount_minor,
            at=hold.created_at,
            made_by=hold.made_by,
            placed=document,
        )
        self._due.setdefault(hold.key, {})[hold.hold_id] = hold.expires_at

    def _copy_resolution(self, hold: Hold) -> None:
        """A capture or release TigerBeetle took alone (`copy_back_capture`,
        `copy_back_resolution`): an open hold MongoDB has is resolved in place; a captured
        one it lacks is inserted captured, its debit on the wallet; else nothing."""
        captured_minor = hold.captured_minor if hold.state == HoldState.CAPTURED else 0
        wallet = self._wallets[hold.key]
        known = self._holds.get(hold.hold_id)
        if known is None:
            if not captured_minor:
                return
            if not wallet.exists():
                raise NotOneBatch(f"hold {hold.hold_id!r} is on a wallet MongoDB lacks")
            self._new_hold(hold, **_resolved_fields(hold, captured_minor))
            wallet.credit -= captured_minor
            wallet.debit += captured_minor
            at = hold.resolved_at or hold.created_at
        else:
            if known["state"] != HoldState.OPEN.value:
                return
            if key_of(known) != hold.key:
                raise NotOneBatch(f"hold {hold.hold_id!r} is another wallet's in MongoDB")
            fields = _resolved_fields(hold, captured_minor)
            if hold.hold_id not in self._new_holds:
                self._resolved.append((hold.hold_id, fields))
            known.update(fields)
            wallet.held -= int(known["amount_minor"])
            wallet.credit -= captured_minor
            wallet.debit += captured_minor
            at = hold.resolved_at or self._now
            self._due.get(hold.key, {}).pop(hold.hold_id, None)
        self._log_hold(
            wallet,
            HoldEventKind.CAPTURE if captured_minor else HoldEventKind.RELEASE,
            hold_id=hold.hold_id,
            amount_minor=captured_minor or int(self._holds[hold.hold_id]["amount_minor"]),
            at=at,
            made_by=hold.resolved_by,
        )

    def _new_hold(self, hold: Hold, **fields: Any) -> dict[str, Any]:
        """A hold MongoDB lacks, as TigerBeetle holds it (`fields` over a new hold's
        document), marked copied back."""
        document = hold_document(
            hold.hold_id,
            hold.key,
            hold.amount_minor,
            timeout_s=hold.timeout_s,
            now=hold.created_at,
            made_by=hold.made_by,
        )
        document.update(fields, copied_back=True)
        self._holds[hold.hold_id] = self._new_holds[hold.hold_id] = document
        return document

    def _log_hold(
        self,
        wallet: BatchWallet,
        kind: str,
        *,
        hold_id: str,
        amount_minor: int,
        at: datetime,
        made_by: str,
        placed: dict[str, Any] | None = None,
    ) -> None:
        self._next(wallet)
        self._entries.append(
            hold_event_entry(
                kind=kind,
                hold_id=hold_id,
                amount_minor=amount_minor,
                balance=wallet.balance(),
                wallet_seq=wallet.seq,
                at=at,
                mirror_state=self._store.marks.copied_back,
                made_by=made_by,
                placed=placed,
            )
        )

    @staticmethod
    def _next(wallet: BatchWallet) -> None:
        """The event takes the wallet's next wallet_seq."""
        wallet.seq += 1
        wallet.posted += 1

    # --- the one write ----------------------------------------------------------------------

    def _write(self) -> None:
        """The wallets, the new entries (`write_batch`), the new holds, and the updates of
        the entries voided and holds resolved, each only if as read (else the transaction
        goes again)."""
        created_at: dict[WalletKey, datetime] = {}
        for event in reversed(self._events):
            if isinstance(event, CopiedWrite):
                created_at[event.key] = event.created_at  # its first write's: a new wallet's
        write_batch(
            self._database,
            self._session,
            self._wallets,
            self._entries,
            now=self._now,
            written_at=lambda key: write_time(created_at[key]),
        )
        new_holds = list(self._new_holds.values())
        for start in range(0, len(new_holds), WRITES_PER_COMMAND):
            self._database.holds().insert_many(
                new_holds[start : start + WRITES_PER_COMMAND], ordered=True, session=self._session
            )
        _update_as_read(
            self._database.holds(),
            self._resolved,
            state=HoldState.OPEN.value,
            what="a hold",
            session=self._session,
        )
        _update_as_read(
            self._database.log(),
            self._voided,
            state=TransactionState.POSTED.value,
            what="an entry",
            session=self._session,
        )


def _resolved_fields(hold: Hold, captured_minor: int) -> dict[str, Any]:
    return {
        "state": hold.state.value,
        "captured_minor": captured_minor,
        "resolved_at": hold.resolved_at,
        "resolved_by": hold.resolved_by,
        "copied_back": True,
    }


def _open_due_by(
    database: MongoDatabase,
    session: ClientSession,
    *,
    latest: datetime,
    keys: dict[WalletKey, CopiedEvent],
) -> dict[WalletKey, dict[str, datetime]]:
    """The open holds of these wallets due by `latest`, by wallet and hold id."""
    due: dict[WalletKey, dict[str, datetime]] = {}
    for hold in find_in(
        database.holds(),
        "client_id",
        sorted({key.client_id for key in keys}),
        also={"state": HoldState.OPEN.value, "expires_at": {"$lte": latest}},
        projection=[*MONGO_KEY_FIELDS, "expires_at"],
        session=session,
    ):
        key = key_of(hold)
        if key in keys:  # not another currency's wallet of the same client
            due.setdefault(key, {})[hold["_id"]] = hold["expires_at"].replace(tzinfo=UTC)
    return due


def _update_as_read(
    collection: Any,
    updates: list[tuple[str, dict[str, Any]]],
    *,
    state: str,
    what: str,
    session: ClientSession,
) -> None:
    """Each `_id`'s update, only while it is in `state` as read (else the transaction
    goes again)."""
    requests = [
        pymongo.UpdateOne({"_id": _id, "state": state}, {"$set": fields}) for _id, fields in updates
    ]
    for start in range(0, len(requests), WRITES_PER_COMMAND):
        chunk = requests[start : start + WRITES_PER_COMMAND]
        result = collection.bulk_write(chunk, ordered=False, session=session)
        if result.matched_count != len(chunk):
            raise moved_since_read(f"{what} of the copy back changed since it was read")
