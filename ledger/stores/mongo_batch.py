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

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pymongo
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from domain import errors
from domain.batches import BatchItem, BatchItemKind, BatchOutcome, refused_at
from domain.holds import HoldState
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import TransactionState, WalletResult, write_time
from ledger.stores.mongo_batch_holds import BatchHolds, BatchWallet
from ledger.stores.mongo_database import MongoDatabase, Refusal, WalletContended
from ledger.stores.mongo_documents import (
    AFTER_WALLET_SEQ,
    EVENT_PENDING,
    MONGO_KEY_FIELDS,
    PostedWrite,
    decimal128,
    key_filter,
    key_of,
    known_answer,
    posted_entry,
    record_of,
)
from ledger.stores.mongo_holds import MongoHolds, expire_due
from ledger.stores.mongo_wallets import moved_since_read

if TYPE_CHECKING:
    from ledger.stores.mongo_store import MongoWalletStore

# Values per `$in` query: secantusdb's cost of one grows with the square of its list (8,189
# ids at once: seconds; in lists of 50: under one), and a real mongod's barely notices.
IN_VALUES_PER_QUERY = 50
T = TypeVar("T")
# Documents per insert or update command (secantusdb takes some 0.4 ms a log entry).
WRITES_PER_COMMAND = 1000
# How long an independent batch retries its write conflicts whole before its items go again
# a wallet at a time (`MongoBatch._post_by_wallet`): a wallet under heavy single-write
# traffic moves during every attempt of a long transaction.
WHOLE_BATCH_WAIT_S = 2.0
_DUPLICATE_KEY = 11000


class MongoBatch:
    """One batch on the MongoDB store (a wrapper of no state of its own)."""

    def __init__(self, store: MongoWalletStore) -> None:
        self._store = store
        self._database: MongoDatabase = store.database

    def post(self, items: Sequence[BatchItem], *, atomic: bool, made_by: str) -> list[BatchOutcome]:
        hold_keys = self._database.guarded(lambda: _hold_keys(self._database, items))
        if atomic:
            return self._post_atomic(items, hold_keys, made_by=made_by)
        try:
            return self._post_part(
                items, hold_keys, atomic=False, made_by=made_by, wait_s=WHOLE_BATCH_WAIT_S
            )
        except WalletContended:
            # A wallet under heavy traffic moves in every attempt of a long transaction: the
            # items go again a wallet at a time, and a wallet still contended item by item.
            return self._post_by_wallet(items, hold_keys, made_by=made_by)

    def _post_atomic(
        self, items: Sequence[BatchItem], hold_keys: dict[str, WalletKey], *, made_by: str
    ) -> list[BatchOutcome]:
        try:
            return self._post_part(items, hold_keys, atomic=True, made_by=made_by)
        except errors.InsufficientFunds as refusal:
            item = items[refusal.details["item"]]
            if item.kind is BatchItemKind.HOLD:
                MongoHolds(self._database, self._store.marks)._remember_refusal(
                    item.transaction_id,
                    item.wallet,
                    amount_minor=item.amount_minor,
                    timeout_s=item.timeout_s,
                    made_by=made_by,
                )
            else:
                self._store._remember_refusal(
                    item.transaction_id,
                    item.wallet,
                    item.amount_minor,
                    errors.InsufficientFunds.code,
                    made_by=made_by,
                )
            raise

    def _post_by_wallet(
        self, items: Sequence[BatchItem], hold_keys: dict[str, WalletKey], *, made_by: str
    ) -> list[BatchOutcome]:
        """An independent batch a wallet's traffic kept from committing whole: each wallet's
        items in a transaction of their own, and a wallet whose items still cannot commit
        together, one item a transaction (as its single writes would go). Items of one
        wallet keep their order; items of different wallets never depended on each other."""
        groups: dict[WalletKey | None, list[int]] = {}
        for index, item in enumerate(items):
            key = item.key if item.kind.names_wallet else hold_keys.get(item.transaction_id)
            groups.setdefault(key, []).append(index)
        outcomes: list[BatchOutcome | None] = [None] * len(items)
        for indexes in groups.values():
            group = [items[index] for index in indexes]
            try:
                answered = self._post_part(
                    group,
                    hold_keys,
                    atomic=False,
                    made_by=made_by,
                    wait_s=WHOLE_BATCH_WAIT_S if len(group) > 1 else None,
                )
            except WalletContended:
                if len(group) == 1:
                    raise
                answered = []
                for position, item in enumerate(group):
                    try:
                        answered += self._post_part(
                            [item], hold_keys, atomic=False, made_by=made_by
                        )
                    except errors.WalletError as refusal:
                        raise _placed(refusal, [indexes[position]]) from None
            except errors.WalletError as refusal:
                raise _placed(refusal, indexes) from None
            for index, outcome in zip(indexes, answered, strict=True):
                outcomes[index] = outcome
        assert all(outcome is not None for outcome in outcomes), "every item answered"
        return [outcome for outcome in outcomes if outcome is not None]

    def _post_part(
        self,
        items: Sequence[BatchItem],
        hold_keys: dict[str, WalletKey],
        *,
        atomic: bool,
        made_by: str,
        wait_s: float | None = None,
    ) -> list[BatchOutcome]:
        """Items in one transaction, its write conflicts retried while its wallets move (for
        at most `wait_s`, None: as long as a single write would)."""
        named = {item.key for item in items if item.key is not None}
        resolved = {
            hold_keys[item.transaction_id]
            for item in items
            if not item.kind.names_wallet and item.transaction_id in hold_keys
        }
        keys = sorted(named | resolved, key=lambda key: key.sort_key())
        client_ids = sorted({key.client_id for key in keys})

        def marks() -> object:
            return wallet_seqs(self._database, client_ids)

        def apply(session: ClientSession) -> list[BatchOutcome]:
            return self._apply(session, items, keys, atomic=atomic, made_by=made_by)

        def run() -> list[BatchOutcome]:
            try:
                return self._database.transaction(apply, wallet_mark=marks, wait_s=wait_s)
            except DuplicateKeyError:
                # A concurrent write of one of its ids (or a wallet's first credit) committed
                # first: the retry reads it.
                return self._database.transaction(apply, wallet_mark=marks, wait_s=wait_s)

        return self._database.guarded(run)

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
        _expire_due(self._store, session, keys, now=now)
        holds = BatchHolds(self._database, self._store.marks, made_by=made_by)
        holds.read(session, items)
        known = self._known_entries(session, items)
        wallets = self._wallets(session, keys)
        outcomes: list[BatchOutcome] = []
        entries: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            entry = known.get(item.transaction_id)
            if item.kind.is_hold_operation:
                outcome: BatchOutcome = holds.walk(index, item, wallets, now=now, entries=entries)
            elif entry is not None:
                outcome = known_answer(
                    entry, item.kind.transaction_kind, item.wallet, item.amount_minor
                )
            else:
                outcome = self._walk(item, wallets[item.wallet], written_at, made_by, entries)
            if atomic and isinstance(outcome, errors.WalletError):
                raise Refusal(refused_at(index, outcome))
            outcomes.append(outcome)
        self._write(session, wallets, entries, now=now, written_at=written_at)
        if not holds.write(session):
            raise moved_since_read("a hold of the batch was resolved since it was read")
        return outcomes

    def _known_entries(
        self, session: ClientSession, items: Sequence[BatchItem]
    ) -> dict[str, dict[str, Any]]:
        ids = [item.transaction_id for item in items if not item.kind.is_hold_operation]
        return {
            entry["_id"]: entry
            for entry in find_in(self._database.log(), "_id", ids, session=session)
        }

    def _wallets(
        self, session: ClientSession, keys: list[WalletKey]
    ) -> dict[WalletKey, BatchWallet]:
        return batch_wallets(self._database, session, keys)

    def _walk(
        self,
        item: BatchItem,
        wallet: BatchWallet,
        written_at: datetime,
        made_by: str,
        entries: list[dict[str, Any]],
    ) -> BatchOutcome:
        """One new item on its wallet as it stands: its result (its log entry added to
        `entries`), or the refusal its single write would answer."""
        key, amount_minor = item.wallet, item.amount_minor
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
                entries.append(
                    _refused_entry(
                        item,
                        written_at=written_at,
                        made_by=made_by,
                        mark=self._store.marks.refused,
                        after_wallet_seq=wallet.seq,
                    )
                )
                return errors.InsufficientFunds(
                    f"Wallet {key.describe()} has less available credit than the amount."
                )
            wallet.credit -= amount_minor
            wallet.debit += amount_minor
        wallet.seq += 1
        wallet.posted += 1
        balance = wallet.balance()
        write = PostedWrite(
            item.transaction_id, item.kind.transaction_kind, key, amount_minor, made_by, written_at
        )
        entry = posted_entry(
            write, balance=balance, wallet_seq=wallet.seq, mirror_state=self._store.marks.new_write
        )
        entries.append(entry)
        return WalletResult(transaction=record_of(entry), balance=balance)

    def _write(
        self,
        session: ClientSession,
        wallets: dict[WalletKey, BatchWallet],
        entries: list[dict[str, Any]],
        *,
        now: datetime,
        written_at: datetime,
    ) -> None:
        write_batch(
            self._database, session, wallets, entries, now=now, written_at=lambda key: written_at
        )


def wallet_seqs(database: MongoDatabase, client_ids: list[str]) -> object:
    """The committed wallet_seq of every wallet of these clients: a batch's wallet mark
    (`MongoDatabase.transaction` retries a write conflict while it moves)."""
    found = find_in(
        database.wallets(),
        "client_id",
        client_ids,
        projection={"_id": 0, "client_id": 1, "wallet_seq": 1},
    )
    return sorted((d["client_id"], d.get("wallet_seq")) for d in found)


def batch_wallets(
    database: MongoDatabase, session: ClientSession, keys: list[WalletKey]
) -> dict[WalletKey, BatchWallet]:
    """A batch's wallets as they stand in its transaction, one query on the indexed client
    id (a key with no document: a wallet the batch may create)."""
    client_ids = sorted({key.client_id for key in keys})
    documents = {
        key_of(document): document
        for document in find_in(database.wallets(), "client_id", client_ids, session=session)
    }
    return {key: BatchWallet.read(key, documents.get(key)) for key in keys}


def write_batch(
    database: MongoDatabase,
    session: ClientSession,
    wallets: dict[WalletKey, BatchWallet],
    entries: list[dict[str, Any]],
    *,
    now: datetime,
    written_at: Callable[[WalletKey], datetime],
) -> None:
    """A batch's writes (a client's, or a copy back's): one update per wallet it changed,
    only if nothing moved it since it was read; a new wallet as its first credit creates
    it (`written_at` its time); every new log entry."""
    updates = [
        _wallet_update(wallet, now=now)
        for wallet in wallets.values()
        if wallet.document is not None and wallet.posted
    ]
    new = [
        _new_wallet_document(wallet, now=now, written_at=written_at(key))
        for key, wallet in wallets.items()
        if wallet.document is None and wallet.posted
    ]
    try:
        for chunk in _chunks(updates):
            result = database.wallets().bulk_write(chunk, ordered=False, session=session)
            if result.matched_count != len(chunk):
                raise moved_since_read("a wallet of the batch changed since it was read")
        for documents in _chunks(new):
            database.wallets().insert_many(documents, ordered=True, session=session)
        for documents in _chunks(entries):
            database.log().insert_many(documents, ordered=True, session=session)
    except BulkWriteError as failure:
        codes = {error.get("code") for error in failure.details.get("writeErrors", [])}
        if _DUPLICATE_KEY in codes:
            raise DuplicateKeyError(str(failure), _DUPLICATE_KEY) from failure
        raise


def _hold_keys(database: MongoDatabase, items: Sequence[BatchItem]) -> dict[str, WalletKey]:
    """The wallets of the holds the batch captures or releases (a hold's wallet never
    changes; a hold id not found answers hold_not_found)."""
    ids = [item.transaction_id for item in items if not item.kind.names_wallet]
    return {
        document["_id"]: key_of(document)
        for document in find_in(database.holds(), "_id", ids, projection=list(MONGO_KEY_FIELDS))
    }


def _expire_due(
    store: MongoWalletStore, session: ClientSession, keys: list[WalletKey], *, now: datetime
) -> None:
    """The batch's wallets' holds past their expiry expire first, as every write of a
    wallet does first, each logged as a point of its history (`expire_due`); one query
    finds the few wallets that have any."""
    client_ids = sorted({key.client_id for key in keys})
    due = {
        key_of(hold)
        for hold in find_in(
            store.database.holds(),
            "client_id",
            client_ids,
            also={"state": HoldState.OPEN.value, "expires_at": {"$lte": now}},
            projection=list(MONGO_KEY_FIELDS),
            session=session,
        )
    }
    for key in keys:  # in the batch's wallet order
        if key in due:
            expire_due(store.database, key, now=now, session=session, marks=store.marks)


def _refused_entry(
    item: BatchItem, *, written_at: datetime, made_by: str, mark: str, after_wallet_seq: int
) -> dict[str, Any]:
    """A refused debit's entry, as a single refused debit leaves it, and where it falls in
    the wallet's order (`after_wallet_seq`: the batch's entries share one time; a refused
    debit takes no wallet_seq of its own, so the event feed orders it by this)."""
    key = item.wallet
    return {
        "_id": item.transaction_id,
        "kind": item.kind.transaction_kind.value,
        **key_filter(key),
        "amount": decimal128(item.amount_minor, key.currency),
        "amount_minor": item.amount_minor,
        "state": TransactionState.FAILED.value,
        "failure_code": errors.InsufficientFunds.code,
        "made_by": made_by,
        "mirror_state": mark,
        "created_at": written_at,
        AFTER_WALLET_SEQ: after_wallet_seq,
        EVENT_PENDING: True,
    }


def _placed(refusal: errors.WalletError, indexes: list[int]) -> errors.WalletError:
    """A refusal of a part of the batch (a 400 naming its item), naming the item by its
    place in the whole batch."""
    item = refusal.details.get("item")
    if isinstance(item, int) and item < len(indexes):
        refusal.details["item"] = indexes[item]
    return refusal


def _chunks(writes: list[T]) -> Iterator[list[T]]:
    """Writes in commands of WRITES_PER_COMMAND: each command answers well within the
    client's socket timeout (MONGO_TIMEOUT_S) however large the batch."""
    for start in range(0, len(writes), WRITES_PER_COMMAND):
        yield writes[start : start + WRITES_PER_COMMAND]


def find_in(
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


def _wallet_update(wallet: BatchWallet, *, now: datetime) -> pymongo.UpdateOne:
    """The wallet's one update: what the batch moved, only if nothing else moved it since
    it was read (its wallet_seq as read: every write and hold event of a wallet moves it)."""
    document = wallet.document
    assert document is not None
    currency = wallet.key.currency
    before = BatchWallet.read(wallet.key, document)
    increments: dict[str, Any] = {"wallet_seq": wallet.posted}
    for field, delta in (
        ("credit", wallet.credit - before.credit),
        ("debit", wallet.debit - before.debit),
        ("historical_credit", wallet.historical - before.historical),
        ("held", wallet.held - before.held),
    ):
        if delta:
            increments[field] = decimal128(delta, currency)
    guard: dict[str, Any] = {
        **key_filter(wallet.key),
        "wallet_seq": document.get("wallet_seq", {"$exists": False}),
    }
    return pymongo.UpdateOne(guard, {"$inc": increments, "$set": {"updated_at": now}})


def _new_wallet_document(
    wallet: BatchWallet, *, now: datetime, written_at: datetime
) -> dict[str, Any]:
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
        # What holds the batch placed on it reserve (a first credit's wallet has none).
        **({"held": decimal128(wallet.held, currency)} if wallet.held else {}),
    }
