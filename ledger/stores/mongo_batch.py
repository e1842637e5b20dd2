"""The MongoDB store's batches: every item of a batch in one transaction, as bulk writes.

A single write costs four round trips (its id's entry, its wallet's due holds, the wallet's
update, the entry's insert): some 5 ms an item on secantusdb, 40 s for a full batch. A batch
instead reads everything it needs at once (the entries of its ids, its wallets), walks its
items in order in memory (each item checked as its single write checks it: a known id
replays or conflicts, a credit within the balance limit, a debit within the available credit
left by the items before it), then writes once: one insert of every new log entry (a refused
debit's too, so a resend is refused alike), one update per wallet. Holds past their expiry
expire first, as before any single write, each logged as a point of its wallet's history
(one query finds the few wallets that have any). One transaction, so nothing is half
applied.

The walk uses the wallets as read; each wallet's update names the `wallet_seq` it read
(every write and hold event of a wallet moves it), so a write that landed on a wallet since
(a single write, a hold, a racing batch) matches nothing, and the whole transaction goes
again as a write conflict.

Independent (`atomic=False`): a refused item is that item's outcome and the others apply.
All-or-nothing: the first refusal aborts the transaction, naming its item; a refused debit
is then remembered as refused, as a single one is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pymongo
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from domain import errors
from domain.batches import BatchItem, BatchItemKind, BatchOutcome, refused_at
from domain.holds import HoldState
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import TransactionState, WalletBalance, WalletResult, write_time
from ledger.stores.mongo_database import MongoDatabase, Refusal
from ledger.stores.mongo_documents import (
    EVENT_PENDING,
    MONGO_KEY_FIELDS,
    balance_fields,
    decimal128,
    key_filter,
    key_of,
    known_answer,
    minor,
    record_of,
)
from ledger.stores.mongo_holds import expire_due

if TYPE_CHECKING:
    from ledger.stores.mongo_store import MongoWalletStore

# Values per `$in` query: secantusdb's cost of one grows with the square of its list (8,189
# ids at once: seconds; in lists of 50: under one), and a real mongod's barely notices.
IN_VALUES_PER_QUERY = 50
T = TypeVar("T")
# Documents per insert or update command (secantusdb takes some 0.4 ms a log entry).
WRITES_PER_COMMAND = 1000
_DUPLICATE_KEY = 11000
_WRITE_CONFLICT = 112


@dataclass
class _Wallet:
    """One wallet through the batch: as read (None: no document yet), and as it stands
    after the items walked so far, in minor units."""

    key: WalletKey
    document: dict[str, Any] | None
    credit: int = 0
    debit: int = 0
    historical: int = 0
    held: int = 0
    seq: int = 0
    posted: int = 0  # items posted to it by this batch

    @classmethod
    def read(cls, key: WalletKey, document: dict[str, Any] | None) -> _Wallet:
        if document is None:
            return cls(key, None)
        currency = key.currency
        return cls(
            key,
            document,
            credit=minor(document["credit"], currency),
            debit=minor(document["debit"], currency),
            historical=minor(document["historical_credit"], currency),
            held=minor(document["held"], currency) if "held" in document else 0,
            seq=int(document.get("wallet_seq", 0)),
        )

    def exists(self) -> bool:
        return self.document is not None or self.posted > 0

    def balance(self) -> WalletBalance:
        return WalletBalance(
            key=self.key,
            credit_minor=self.credit - self.held,
            debit_minor=self.debit,
            historical_credit_minor=self.historical,
            held_minor=self.held,
        )


class MongoBatch:
    """One batch on the MongoDB store (a wrapper of no state of its own)."""

    def __init__(self, store: MongoWalletStore) -> None:
        self._store = store
        self._database: MongoDatabase = store.database

    def post(self, items: Sequence[BatchItem], *, atomic: bool, made_by: str) -> list[BatchOutcome]:
        keys = sorted({item.key for item in items}, key=lambda key: key.sort_key())
        client_ids = sorted({key.client_id for key in keys})

        def marks() -> object:
            found = _find_in(
                self._database.wallets(),
                "client_id",
                client_ids,
                projection={"_id": 0, "client_id": 1, "wallet_seq": 1},
            )
            return sorted((d["client_id"], d.get("wallet_seq")) for d in found)

        def apply(session: ClientSession) -> list[BatchOutcome]:
            return self._apply(session, items, keys, atomic=atomic, made_by=made_by)

        def run() -> list[BatchOutcome]:
            try:
                return self._database.transaction(apply, wallet_mark=marks)
            except DuplicateKeyError:
                # A concurrent write of one of its ids (or a wallet's first credit) committed
                # first: the retry reads it.
                return self._database.transaction(apply, wallet_mark=marks)

        try:
            return self._database.guarded(run)
        except errors.InsufficientFunds as refusal:
            item = items[refusal.details["item"]]
            self._store._remember_refusal(
                item.transaction_id,
                item.key,
                item.amount_minor,
                errors.InsufficientFunds.code,
                made_by=made_by,
            )
            raise

    # --- inside the transaction ----------------------------------------------------------

    def _apply(
        self,
        session: ClientSession,
        items: Sequence[BatchItem],
        keys: list[WalletKey],
        *,
        atomic: bool,
        made_by: str,
    ) -> list[BatchOutcome]:
        now = datetime.now(UTC)
        written_at = write_time(now)
        self._expire_due(session, keys, now=now)
        known = self._known_entries(session, items)
        wallets = self._wallets(session, keys)
        outcomes: list[BatchOutcome] = []
        entries: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            entry = known.get(item.transaction_id)
            if entry is not None:
                outcome: BatchOutcome = known_answer(
                    entry, item.kind.transaction_kind, item.key, item.amount_minor
                )
            else:
                outcome = self._walk(item, wallets[item.key], written_at, made_by, entries)
            if atomic and isinstance(outcome, errors.WalletError):
                raise Refusal(refused_at(index, outcome))
            outcomes.append(outcome)
        self._write(session, wallets, entries, now=now, written_at=written_at)
        return outcomes

    def _known_entries(
        self, session: ClientSession, items: Sequence[BatchItem]
    ) -> dict[str, dict[str, Any]]:
        ids = [item.transaction_id for item in items]
        return {
            entry["_id"]: entry
            for entry in _find_in(self._database.log(), "_id", ids, session=session)
        }

    def _wallets(self, session: ClientSession, keys: list[WalletKey]) -> dict[WalletKey, _Wallet]:
        """The batch's wallets, one query on the indexed client id."""
        client_ids = sorted({key.client_id for key in keys})
        documents = {
            key_of(document): document
            for document in _find_in(
                self._database.wallets(), "client_id", client_ids, session=session
            )
        }
        return {key: _Wallet.read(key, documents.get(key)) for key in keys}

    def _expire_due(self, session: ClientSession, keys: list[WalletKey], *, now: datetime) -> None:
        """The batch's wallets' holds past their expiry expire first, as every write of a
        wallet does first, each logged as a point of its history (`expire_due`); one query
        finds the few wallets that have any."""
        client_ids = sorted({key.client_id for key in keys})
        due = {
            key_of(hold)
            for hold in _find_in(
                self._database.holds(),
                "client_id",
                client_ids,
                also={"state": HoldState.OPEN.value, "expires_at": {"$lte": now}},
                projection=list(MONGO_KEY_FIELDS),
                session=session,
            )
        }
        for key in keys:  # in the batch's wallet order
            if key in due:
                expire_due(self._database, key, now=now, session=session, marks=self._store.marks)

    def _walk(
        self,
        item: BatchItem,
        wallet: _Wallet,
        written_at: datetime,
        made_by: str,
        entries: list[dict[str, Any]],
    ) -> BatchOutcome:
        """One new item on its wallet as it stands: its result (its log entry added to
        `entries`), or the refusal its single write would answer."""
        key, amount_minor = item.key, item.amount_minor
        if item.kind is BatchItemKind.CREDIT:
            if wallet.historical + amount_minor > BALANCE_MINOR_MAX:
                return errors.BalanceLimitExceeded(
                    f"Wallet {key.describe()} would hold more than {BALANCE_MINOR_MAX} minor "
                    "units of credit in all; the ledger's balance limit."
                )
            wallet.credit += amount_minor
            wallet.historical += amount_minor
        else:
            if not wallet.exists():
                return errors.WalletNotFound(f"No wallet {key.describe()}.")
            if wallet.credit - wallet.held < amount_minor:
                entries.append(self._refused_entry(item, written_at, made_by))
                return errors.InsufficientFunds(
                    f"Wallet {key.describe()} has less available credit than the amount."
                )
            wallet.credit -= amount_minor
            wallet.debit += amount_minor
        wallet.seq += 1
        wallet.posted += 1
        balance = wallet.balance()
        entry = {
            "_id": item.transaction_id,
            "kind": item.kind.transaction_kind.value,
            **key_filter(key),
            "amount": decimal128(amount_minor, key.currency),
            "amount_minor": amount_minor,
            "state": TransactionState.POSTED.value,
            "failure_code": "",
            "made_by": made_by,
            "balance_after": balance_fields(balance),
            "wallet_seq": wallet.seq,
            "mirror_state": self._store.marks.new_write,
            "created_at": written_at,
            EVENT_PENDING: True,
        }
        entries.append(entry)
        return WalletResult(transaction=record_of(entry), balance=balance)

    def _refused_entry(self, item: BatchItem, written_at: datetime, made_by: str) -> dict[str, Any]:
        """A refused debit's entry, as a single refused debit leaves it."""
        key = item.key
        return {
            "_id": item.transaction_id,
            "kind": item.kind.transaction_kind.value,
            **key_filter(key),
            "amount": decimal128(item.amount_minor, key.currency),
            "amount_minor": item.amount_minor,
            "state": TransactionState.FAILED.value,
            "failure_code": errors.InsufficientFunds.code,
            "made_by": made_by,
            "mirror_state": self._store.marks.refused,
            "created_at": written_at,
            EVENT_PENDING: True,
        }

    def _write(
        self,
        session: ClientSession,
        wallets: dict[WalletKey, _Wallet],
        entries: list[dict[str, Any]],
        *,
        now: datetime,
        written_at: datetime,
    ) -> None:
        """The batch's writes: one update (or insert) per wallet it changed, every new log
        entry."""
        database = self._database
        updates = [
            _wallet_update(wallet, now=now)
            for wallet in wallets.values()
            if wallet.document is not None and wallet.posted
        ]
        new = [
            _new_wallet_document(wallet, now=now, written_at=written_at)
            for wallet in wallets.values()
            if wallet.document is None and wallet.posted
        ]
        try:
            for chunk in _chunks(updates):
                result = database.wallets().bulk_write(chunk, ordered=False, session=session)
                if result.matched_count != len(chunk):
                    raise _moved("a wallet of the batch changed since it was read")
            for documents in _chunks(new):
                database.wallets().insert_many(documents, ordered=True, session=session)
            for documents in _chunks(entries):
                database.log().insert_many(documents, ordered=True, session=session)
        except BulkWriteError as failure:
            codes = {error.get("code") for error in failure.details.get("writeErrors", [])}
            if _DUPLICATE_KEY in codes:
                raise DuplicateKeyError(str(failure), _DUPLICATE_KEY) from failure
            raise


def _chunks(writes: list[T]) -> Iterator[list[T]]:
    """Writes in commands of WRITES_PER_COMMAND: each command answers well within the
    client's socket timeout (MONGO_TIMEOUT_S) however large the batch."""
    for start in range(0, len(writes), WRITES_PER_COMMAND):
        yield writes[start : start + WRITES_PER_COMMAND]


def _find_in(
    collection: Collection[dict[str, Any]],
    field: str,
    values: list[Any],
    *,
    also: dict[str, Any] | None = None,
    projection: Any = None,
    session: ClientSession | None = None,
) -> Iterator[dict[str, Any]]:
    """The documents whose `field` is one of `values` (and that match `also`), in queries
    of IN_VALUES_PER_QUERY values."""
    for start in range(0, len(values), IN_VALUES_PER_QUERY):
        chunk = values[start : start + IN_VALUES_PER_QUERY]
        yield from collection.find(
            {field: {"$in": chunk}, **(also or {})}, projection, session=session
        )


def _moved(why: str) -> OperationFailure:
    """A write conflict found by the batch itself: the transaction goes again, as it does
    on the server's own write conflicts (`MongoDatabase.transaction`)."""
    return OperationFailure(
        f"write conflict: {why}",
        code=_WRITE_CONFLICT,
        details={"errorLabels": ["TransientTransactionError"]},
    )


def _wallet_update(wallet: _Wallet, *, now: datetime) -> pymongo.UpdateOne:
    """The wallet's one update: what the batch moved, only if nothing else moved it since
    it was read (its wallet_seq as read: every write and hold event of a wallet moves it)."""
    document = wallet.document
    assert document is not None
    currency = wallet.key.currency
    before = _Wallet.read(wallet.key, document)
    increments: dict[str, Any] = {"wallet_seq": wallet.posted}
    for field, delta in (
        ("credit", wallet.credit - before.credit),
        ("debit", wallet.debit - before.debit),
        ("historical_credit", wallet.historical - before.historical),
    ):
        if delta:
            increments[field] = decimal128(delta, currency)
    guard: dict[str, Any] = {
        **key_filter(wallet.key),
        "wallet_seq": document.get("wallet_seq", {"$exists": False}),
    }
    return pymongo.UpdateOne(guard, {"$inc": increments, "$set": {"updated_at": now}})


def _new_wallet_document(wallet: _Wallet, *, now: datetime, written_at: datetime) -> dict[str, Any]:
    """A wallet the batch creates, as a single first credit creates it."""
    currency = wallet.key.currency
    return {
        **key_filter(wallet.key),
        "credit": decimal128(wallet.credit, currency),
        "debit": decimal128(wallet.debit, currency),
        "historical_credit": decimal128(wallet.historical, currency),
        "wallet_seq": wallet.seq,
        "updated_at": now,
        "created_at": written_at,
        # Born with the transaction log: its whole history is in the outbox.
        "log_complete": True,
    }
