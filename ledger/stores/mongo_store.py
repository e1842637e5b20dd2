"""The legacy MongoDB wallet store (the seed's `PaymentsWallet`), through pymongo only.

Its database (`mongo_database.MongoDatabase`: the connection, both collections, failures as
StoreUnavailable, transactions) is shared with the migration's view of it. Collections:
- `payments_wallets`: one document per wallet; credit, debit and historical_credit as
  Decimal128 quantized to the currency's exponent (never float); unique on the wallet key.
- `wallet_transactions`: the transaction log, one document per credit, debit and void,
  written in the same MongoDB transaction as the balance it changes. A credit's or debit's
  `_id` is the client's id; a void's `_id` is an ObjectId, a BSON type no client id (always
  a string) can equal, so no id a client picks can collide with an internal entry; one void
  per transaction is a unique index on `voided_transaction_id`. Each entry carries the
  wallet's balance right after it (so a retried id answers the original result), a per-wallet
  `wallet_seq`, and `mirror_state`, which makes the log the durable outbox of the TigerBeetle
  mirror. The states are the migration's: the store is given the one each kind of entry is
  born with (`LogMarks`).

Every operation is one multi-document transaction, its write conflicts retried while the
wallet moves and answered 503 once it stands still (`MongoDatabase.transaction`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from domain import errors
from domain.batches import BatchItem, BatchOutcome
from domain.history import HistoryPage, HistoryQuery
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import (
    TransactionKind,
    TransactionRecord,
    TransactionState,
    WalletBalance,
    WalletResult,
    write_time,
)
from ledger.stores.mongo_batch import MongoBatch
from ledger.stores.mongo_copy_back import CopiedEvent, copy_back_events
from ledger.stores.mongo_database import MongoDatabase, Refusal
from ledger.stores.mongo_documents import (
    EVENT_PENDING,
    LogEntry,
    LogMarks,
    PostedVoid,
    PostedWrite,
    decimal128,
    key_filter,
    key_of,
    known_answer,
    log_entry_of,
    minor,
    posted_entry,
    record_of,
    void_entry,
)
from ledger.stores.mongo_history import log_history
from ledger.stores.mongo_holds import (
    MongoHoldOperations,
    available_balance_of,
    expire_due,
    read_balance,
    spend_wallet,
)
from ledger.stores.mongo_wallets import update_wallet


def _refuse_past_balance_limit(wallet: dict[str, Any], key: WalletKey) -> None:
    """Inside the write's transaction, after its update: a wallet whose historical credit
    went past the limit aborts the transaction, so nothing posts (Decimal128 sums these
    amounts exactly; the log's int64 balance fields could not hold them)."""
    if minor(wallet["historical_credit"], key.currency) > BALANCE_MINOR_MAX:
        raise Refusal(
            errors.BalanceLimitExceeded(
                f"Wallet {key.describe()} would hold more than {BALANCE_MINOR_MAX} minor "
                "units of credit in all; the ledger's balance limit."
            )
        )


def _now_with_due_holds_expired(
    database: MongoDatabase,
    key: WalletKey,
    session: ClientSession,
    marks: LogMarks,
    *,
    as_of: datetime | None = None,
) -> datetime:
    """Now, once the wallet's holds past their expiry no longer hold its money: the first
    step of every write transaction of a wallet (ledger.stores.mongo_holds). `as_of`: a
    write copied back from TigerBeetle, at its own time there: only the holds due by then
    expire before it, so each expiry lands among the copied writes where TigerBeetle's
    history has it (the rest expire at a later copied event or the copy back's sweep)."""
    now = datetime.now(UTC)
    expire_due(database, key, now=min(as_of or now, now), session=session, marks=marks)
    return now


class MongoWalletStore(MongoHoldOperations):
    """Wallet store on MongoDB (phase 0's primary store)."""

    name = "mongo"

    def __init__(self, database: MongoDatabase, *, marks: LogMarks) -> None:
        """`marks`: the `mirror_state` each kind of log entry is born with (the migration's
        states, `migration.outbox.LOG_MARKS`)."""
        self.database = database
        self.marks = marks

    def _wallet_mark(self, key: WalletKey) -> Callable[[], object]:
        """The wallet's committed wallet_seq (None while it does not exist)."""

        def mark() -> object:
            return self.database.wallets().find_one(key_filter(key), {"_id": 0, "wallet_seq": 1})

        return mark

    def _voided_wallet_mark(self, transaction_id: str) -> Callable[[], object]:
        """The mark of the wallet a voided transaction belongs to."""

        def mark() -> object:
            entry = self.database.log().find_one({"_id": transaction_id})
            return None if entry is None else self._wallet_mark(key_of(entry))()

        return mark

    # --- writes -----------------------------------------------------------------------------

    def add_credit(
        self,
        key: WalletKey,
        amount_minor: int,
        transaction_id: str,
        *,
        mirror: bool = True,
        created_at: datetime | None = None,
        made_by: str = "",
    ) -> WalletResult:
        """`mirror=False` copies back a write TigerBeetle already holds (leaving phase 4),
        with `created_at`, the time TigerBeetle took it."""
        assert amount_minor > 0, "the service refuses amounts that are not positive"

        def credit(session: ClientSession) -> WalletResult:
            return _credit_in(
                self,
                session,
                key,
                amount_minor,
                transaction_id,
                mirror=mirror,
                created_at=created_at,
                made_by=made_by,
            )

        return self._write(transaction_id, key, TransactionKind.CREDIT, amount_minor, credit)

    def subtract_credit(
        self,
        key: WalletKey,
        amount_minor: int,
        reference_id: str,
        *,
        mirror: bool = True,
        created_at: datetime | None = None,
        made_by: str = "",
    ) -> WalletResult:
        assert amount_minor > 0, "the service refuses amounts that are not positive"

        def debit(session: ClientSession) -> WalletResult:
            return _debit_in(
                self,
                session,
                key,
                amount_minor,
                reference_id,
                mirror=mirror,
                created_at=created_at,
                made_by=made_by,
            )

        try:
            return self._write(reference_id, key, TransactionKind.DEBIT, amount_minor, debit)
        except errors.InsufficientFunds:
            if mirror:  # a copy back refused is a difference to repair, not the id's answer
                self._remember_refusal(
                    reference_id, key, amount_minor, "insufficient_funds", made_by=made_by
                )
            raise

    def void_transaction(
        self,
        transaction_id: str,
        *,
        voided_by: str,
        reason: str,
        mirror: bool = True,
        voided_at: datetime | None = None,
    ) -> WalletResult:
        def void(session: ClientSession) -> WalletResult:
            wallets, log = self.database.wallets(), self.database.log()
            entry = _voidable_entry(log, transaction_id, session)
            key = key_of(entry)
            now = _now_with_due_holds_expired(
                self.database, key, session, self.marks, as_of=None if mirror else voided_at
            )
            posted = PostedVoid(
                entry, voided_by=voided_by, reason=reason, voided_at=write_time(voided_at or now)
            )
            wallet = _reverse_on_wallet(wallets, entry, key, now=now, session=session)
            balance = available_balance_of(wallet)
            log.update_one({"_id": transaction_id}, {"$set": posted.fields}, session=session)
            log.insert_one(
                void_entry(
                    posted,
                    balance=balance,
                    wallet_seq=wallet["wallet_seq"],
                    mirror_state=self._mark(mirror),
                ),
                session=session,
            )
            updated = log.find_one({"_id": transaction_id}, session=session)
            assert updated is not None, "the entry just voided is in the log"
            return WalletResult(transaction=record_of(updated), balance=balance)

        def run() -> WalletResult:
            try:
                return self.database.transaction(
                    void, wallet_mark=self._voided_wallet_mark(transaction_id)
                )
            except DuplicateKeyError:
                # A concurrent void of the same transaction committed first.
                raise errors.AlreadyVoided(
                    f"Transaction {transaction_id!r} was already voided."
                ) from None

        return self.database.guarded(run)

    # --- batches ----------------------------------------------------------------------------

    def post_batch(
        self, items: Sequence[BatchItem], *, atomic: bool, made_by: str = ""
    ) -> list[BatchOutcome]:
        """Every item in one transaction, as bulk writes (`ledger.stores.mongo_batch`);
        MongoDB failing is StoreUnavailable with nothing applied, and a resend applies it."""
        return MongoBatch(self).post(items, atomic=atomic, made_by=made_by)

    def copy_back_events(self, events: Sequence[CopiedEvent]) -> int:
        """Credits, debits, voids and hold events TigerBeetle took alone, in one transaction
        (`ledger.stores.mongo_copy_back`); how many log entries were new. NotOneBatch: copy
        them one by one instead."""
        return copy_back_events(self, events)

    # --- reads ------------------------------------------------------------------------------

    def get_balance(self, key: WalletKey) -> WalletBalance:
        return self.get_balance_and_seq(key)[0]

    def get_balance_and_seq(self, key: WalletKey) -> tuple[WalletBalance, int]:
        """The balance and the wallet_seq it stands at, from one document read (what a
        shadow comparison needs to compare at exactly the same point)."""

        def read() -> tuple[WalletBalance, int]:
            wallets = self.database.wallets()
            wallet = wallets.find_one(key_filter(key))
            if wallet is None:
                raise errors.WalletNotFound(f"No wallet {key.describe()}.")
            return read_balance(self.database, wallet), int(wallet.get("wallet_seq", 0))

        return self.database.guarded(read)

    def get_balances(self, client_id: str) -> list[WalletBalance]:
        return [balance for balance, _ in self.get_balances_and_seqs(client_id)]

    def get_balances_and_seqs(self, client_id: str) -> list[tuple[WalletBalance, int]]:
        """Every wallet of the client with the wallet_seq its balance stands at, from one
        query (a shadow comparison of the list compares each wallet at the point it saw)."""

        def read() -> list[tuple[WalletBalance, int]]:
            wallets = self.database.wallets()
            found = [
                (read_balance(self.database, wallet), int(wallet.get("wallet_seq", 0)))
                for wallet in wallets.find({"client_id": client_id})
            ]
            return sorted(found, key=lambda pair: pair[0].key.sort_key())

        return self.database.guarded(read)

    def get_transaction(self, transaction_id: str) -> TransactionRecord:
        def read() -> TransactionRecord:
            log = self.database.log()
            entry = log.find_one({"_id": transaction_id})
            if entry is None or entry.get("kind") == "void":
                raise errors.TransactionNotFound(f"No transaction {transaction_id!r}.")
            return record_of(entry)

        return self.database.guarded(read)

    def recent_log(self, key: WalletKey, *, limit: int = 20, skip: int = 0) -> list[LogEntry]:
        """The wallet's latest transaction log entries, newest first, a page at a time (for
        support staff: one wallet's log is small enough for skip)."""

        def read() -> list[LogEntry]:
            log = self.database.log()
            found = log.find(key_filter(key)).sort([("created_at", -1), ("_id", -1)])
            return [log_entry_of(entry) for entry in found.skip(skip).limit(limit)]

        return self.database.guarded(read)

    def history(self, query: HistoryQuery) -> HistoryPage:
        return self.database.guarded(lambda: log_history(self.database, query))

    # --- internals --------------------------------------------------------------------------

    def _mark(self, mirror: bool) -> str:
        """The `mirror_state` of a new entry: to be mirrored, or (`mirror=False`) copied
        back from TigerBeetle, which holds it already."""
        return self.marks.new_write if mirror else self.marks.copied_back

    def _write(
        self,
        transaction_id: str,
        key: WalletKey,
        kind: TransactionKind,
        amount_minor: int,
        callback: Callable[[ClientSession], WalletResult],
    ) -> WalletResult:
        def run() -> WalletResult:
            try:
                return self.database.transaction(callback, wallet_mark=self._wallet_mark(key))
            except _Replay as replay:
                return replay.result
            except DuplicateKeyError:
                # A concurrent request with the same id (or the wallet's first credit from
                # another id) committed first: the retry sees its outcome.
                try:
                    return self.database.transaction(callback, wallet_mark=self._wallet_mark(key))
                except _Replay as replay:
                    return replay.result

        return self.database.guarded(run)

    def _log_entry(
        self,
        log: Any,
        session: ClientSession,
        transaction_id: str,
        kind: TransactionKind,
        key: WalletKey,
        amount_minor: int,
        wallet: dict[str, Any],
        written_at: datetime,
        mirror: bool,
        made_by: str,
    ) -> WalletResult:
        balance = available_balance_of(wallet)
        entry = posted_entry(
            PostedWrite(transaction_id, kind, key, amount_minor, made_by, written_at),
            balance=balance,
            wallet_seq=wallet["wallet_seq"],
            mirror_state=self._mark(mirror),
        )
        log.insert_one(entry, session=session)
        return WalletResult(transaction=record_of(entry), balance=balance)

    def _remember_refusal(
        self,
        reference_id: str,
        key: WalletKey,
        amount_minor: int,
        failure_code: str,
        *,
        made_by: str,
    ) -> None:
        """Record a refused debit so a retry of the id is refused the same way."""
        log = self.database.log()
        try:
            log.insert_one(
                {
                    "_id": reference_id,
                    "kind": TransactionKind.DEBIT.value,
                    **key_filter(key),
                    "amount": decimal128(amount_minor, key.currency),
                    "amount_minor": amount_minor,
                    "state": TransactionState.FAILED.value,
                    "failure_code": failure_code,
                    "made_by": made_by,
                    "mirror_state": self.marks.refused,
                    "created_at": write_time(datetime.now(UTC)),
                    EVENT_PENDING: True,
                }
            )
        except DuplicateKeyError:
            pass  # recorded by a concurrent retry of the same refused debit
        except PyMongoError as exc:
            raise errors.StoreUnavailable(f"MongoDB failed: {exc}") from exc


def _credit_in(
    store: MongoWalletStore,
    session: ClientSession,
    key: WalletKey,
    amount_minor: int,
    transaction_id: str,
    *,
    mirror: bool,
    created_at: datetime | None,
    made_by: str,
) -> WalletResult:
    """A credit inside the caller's transaction (a single write's, or a batch's)."""
    wallets, log = store.database.wallets(), store.database.log()
    _refuse_or_replay(log, session, transaction_id, TransactionKind.CREDIT, key, amount_minor)
    now = _now_with_due_holds_expired(
        store.database, key, session, store.marks, as_of=None if mirror else created_at
    )
    written_at = write_time(created_at or now)
    amount = decimal128(amount_minor, key.currency)
    wallet = update_wallet(
        wallets,
        key,
        {
            "$inc": {"credit": amount, "historical_credit": amount, "wallet_seq": 1},
            "$set": {"updated_at": now},
            "$setOnInsert": {
                "debit": decimal128(0, key.currency),
                "created_at": written_at,
                # Born with the transaction log: its whole history is in the outbox,
                # so the mirror needs no backfill for it.
                "log_complete": True,
            },
        },
        upsert=True,
        session=session,
    )
    assert wallet is not None, "an upsert makes the wallet it does not find"
    _refuse_past_balance_limit(wallet, key)
    return store._log_entry(
        log,
        session,
        transaction_id,
        TransactionKind.CREDIT,
        key,
        amount_minor,
        wallet,
        written_at,
        mirror,
        made_by,
    )


def _debit_in(
    store: MongoWalletStore,
    session: ClientSession,
    key: WalletKey,
    amount_minor: int,
    reference_id: str,
    *,
    mirror: bool,
    created_at: datetime | None,
    made_by: str,
) -> WalletResult:
    """A debit inside the caller's transaction (a single write's, or a batch's)."""
    wallets, log = store.database.wallets(), store.database.log()
    _refuse_or_replay(log, session, reference_id, TransactionKind.DEBIT, key, amount_minor)
    now = _now_with_due_holds_expired(
        store.database, key, session, store.marks, as_of=None if mirror else created_at
    )
    written_at = write_time(created_at or now)
    wallet = _spend(wallets, key, amount_minor, now=now, session=session)
    if wallet is None:
        if wallets.find_one(key_filter(key), {"_id": 1}, session=session) is None:
            raise Refusal(errors.WalletNotFound(f"No wallet {key.describe()}."))
        raise Refusal(
            errors.InsufficientFunds(
                f"Wallet {key.describe()} has less available credit than the amount."
            )
        )
    return store._log_entry(
        log,
        session,
        reference_id,
        TransactionKind.DEBIT,
        key,
        amount_minor,
        wallet,
        written_at,
        mirror,
        made_by,
    )


class _Replay(Exception):
    """The id was applied before: carries the original result out of the transaction."""

    def __init__(self, result: WalletResult) -> None:
        super().__init__("replay")
        self.result = result


def _refuse_or_replay(
    log: Collection[dict[str, Any]],
    session: ClientSession,
    transaction_id: str,
    kind: TransactionKind,
    key: WalletKey,
    amount_minor: int,
) -> None:
    """Raise the original outcome of an id seen before, or its idempotency conflict."""
    entry = log.find_one({"_id": transaction_id}, session=session)
    if entry is None:
        return
    answer = known_answer(entry, kind, key, amount_minor)
    if isinstance(answer, errors.WalletError):
        raise Refusal(answer)
    raise _Replay(answer)


def _voidable_entry(
    log: Collection[dict[str, Any]], transaction_id: str, session: ClientSession
) -> dict[str, Any]:
    """The posted transaction to void, or a refusal: not found (or failed), already voided."""
    entry = log.find_one({"_id": transaction_id}, session=session)
    if entry is None or entry["state"] == TransactionState.FAILED:
        raise Refusal(errors.TransactionNotFound(f"No posted transaction {transaction_id!r}."))
    if entry["state"] == TransactionState.VOIDED:
        raise Refusal(
            errors.AlreadyVoided(
                f"Transaction {transaction_id!r} was already voided.", original=record_of(entry)
            )
        )
    return entry


def _spend(
    wallets: Collection[dict[str, Any]],
    key: WalletKey,
    amount_minor: int,
    *,
    now: datetime,
    session: ClientSession,
) -> dict[str, Any] | None:
    """Move `amount_minor` from available (credit) to spent (debit), only if the wallet
    holds it: a debit, or the void of a credit. None when it does not (or no such wallet)."""
    amount = decimal128(amount_minor, key.currency)
    return spend_wallet(
        wallets,
        key,
        amount_minor,
        {
            "$inc": {
                "credit": decimal128(-amount_minor, key.currency),
                "debit": amount,
                "wallet_seq": 1,
            },
            "$set": {"updated_at": now},
        },
        session=session,
    )


def _reverse_on_wallet(
    wallets: Collection[dict[str, Any]],
    entry: dict[str, Any],
    key: WalletKey,
    *,
    now: datetime,
    session: ClientSession,
) -> dict[str, Any]:
    """Undo a logged credit or debit on its wallet; the wallet document after. Voiding a
    credit moves its amount from credit to debit, refused if the wallet no longer holds
    it; voiding a debit gives the amount back as a new credit, within the balance limit."""
    amount_minor = int(entry["amount_minor"])
    amount = decimal128(amount_minor, key.currency)
    if entry["kind"] == TransactionKind.CREDIT:
        wallet = _spend(wallets, key, amount_minor, now=now, session=session)
        if wallet is None:
            raise Refusal(
                errors.VoidWouldOverdraw(
                    f"Voiding credit {entry['_id']!r} would take the wallet below zero."
                )
            )
        return wallet
    wallet = update_wallet(
        wallets,
        key,
        {
            "$inc": {"credit": amount, "historical_credit": amount, "wallet_seq": 1},
            "$set": {"updated_at": now},
        },
        session=session,
    )
    assert wallet is not None, "a logged transaction's wallet exists"
    _refuse_past_balance_limit(wallet, key)
    return wallet
