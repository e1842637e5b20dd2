"""The legacy MongoDB wallet store (the seed's `PaymentsWallet`), through pymongo only.

Collections:
- `payments_wallets`: one document per wallet; credit, debit and historical_credit as
  Decimal128 quantized to the currency's exponent (never float); unique on the wallet key.
- `wallet_transactions`: the transaction log, one document per credit, debit and void,
  written in the same MongoDB transaction as the balance it changes. A credit's or debit's
  `_id` is the client's id; a void's `_id` is an ObjectId, a BSON type no client id (always
  a string) can equal, so no id a client picks can collide with an internal entry; one void
  per transaction is a unique index on `voided_transaction_id`. Each entry carries the
  wallet's balance right after it (so a retried id answers the original result), a per-wallet
  `wallet_seq`, and `mirror_state`, which makes the log the durable outbox of the TigerBeetle
  mirror.

Every operation is one multi-document transaction. Write conflicts between concurrent
transactions are retried (tenacity) while the wallet moves, but for at most
MONGO_LOCK_WAIT_S while it stands still, then answered 503: a wallet locked by a
transaction its dead process abandoned stays locked until the server's transaction lifetime
reaps it, and no request may wait that long. A server that does not
answer is `StoreUnavailable` within MONGO_TIMEOUT_S, never a long hang.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pymongo
from bson import ObjectId
from django.conf import settings
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from domain import errors
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
from ledger.stores.mongo_documents import (
    balance_fields,
    balance_of,
    decimal128,
    key_filter,
    key_of,
    minor,
)

T = TypeVar("T")
WALLETS = "payments_wallets"
LOG = "wallet_transactions"
# The fields that name a wallet, in both collections (`mongo_documents.key_filter`).
WALLET_KEY_INDEX = [
    ("client_id", 1),
    ("country", 1),
    ("currency", 1),
    ("issuer_type_identifier", 1),
]


class MirrorState:
    """Where a log entry stands with the TigerBeetle mirror (the outbox states)."""

    PENDING = "pending"  # to be applied to TigerBeetle by the mirror
    MIRRORED = "mirrored"  # applied to TigerBeetle
    COVERED = "covered"  # older than the backfill snapshot: in the opening balance
    PARKED = "parked"  # refused or kept failing: waits for support, blocks TB reads
    AWAITING_BACKFILL = "awaiting_backfill"  # a legacy wallet the backfill has not imported
    FROM_TIGERBEETLE = "from_tigerbeetle"  # a phase-4 write copied back: already in TB
    NONE = "none"  # nothing to mirror (a refused debit)


def _mirror_state(mirror: bool) -> str:
    return MirrorState.PENDING if mirror else MirrorState.FROM_TIGERBEETLE


def _is_write_conflict(exc: BaseException) -> bool:
    return (
        isinstance(exc, PyMongoError)
        and exc.has_error_label("TransientTransactionError")
        and (not isinstance(exc, pymongo.errors.ConnectionFailure))
    )


# However busy a wallet, a request stops retrying its write conflicts after this long.
CONTENDED_WAIT_MAX_S = 20.0


class _WalletStalled(stop_base):
    """Tenacity stop: our attempts kept conflicting and the wallet has not changed for
    `lock_wait_s`. Live requests on a busy wallet commit one after another (its wallet_seq
    moves), so they keep retrying; a wallet held by a dead process's transaction does not
    move until the server reaps that transaction, and no request may wait that out."""

    def __init__(self, lock_wait_s: float, wallet_mark: Callable[[], object]) -> None:
        self.lock_wait_s = lock_wait_s
        self.wallet_mark = wallet_mark
        self.mark: object = None
        self.still_since = time.monotonic()

    def __call__(self, retry_state: RetryCallState) -> bool:
        now = time.monotonic()
        try:
            mark = self.wallet_mark()
        except PyMongoError:
            mark = self.mark
        if mark != self.mark:
            self.mark, self.still_since = mark, now
        return now + (retry_state.upcoming_sleep or 0) - self.still_since >= self.lock_wait_s


def _refuse_past_balance_limit(wallet: dict[str, Any], key: WalletKey) -> None:
    """Inside the write's transaction, after its update: a wallet whose historical credit
    went past the limit aborts the transaction, so nothing posts (Decimal128 sums these
    amounts exactly; the log's int64 balance fields could not hold them)."""
    if minor(wallet["historical_credit"], key.currency) > BALANCE_MINOR_MAX:
        raise _Refusal(
            errors.BalanceLimitExceeded(
                f"Wallet {key.describe()} would hold more than {BALANCE_MINOR_MAX} minor "
                "units of credit in all; the ledger's balance limit."
            )
        )


class _Refusal(Exception):
    """Carries a WalletError out of a transaction callback so the transaction aborts."""

    def __init__(self, error: errors.WalletError) -> None:
        super().__init__(error.message)
        self.error = error


class MongoWalletStore:
    """Wallet store on MongoDB (phase 0's primary store)."""

    name = "mongo"

    def __init__(
        self,
        mongo_url: str | None = None,
        database: str | None = None,
        timeout_s: float | None = None,
        lock_wait_s: float | None = None,
    ) -> None:
        self.mongo_url = mongo_url or settings.MONGO_URL
        self._database_name = database
        self.timeout_s = timeout_s if timeout_s is not None else settings.MONGO_TIMEOUT_S
        self.lock_wait_s = lock_wait_s if lock_wait_s is not None else settings.MONGO_LOCK_WAIT_S
        self._client: pymongo.MongoClient[dict[str, Any]] | None = None
        self._client_pid: int | None = None
        self._indexes_ready = False
        self._lock = threading.Lock()

    # --- connection -----------------------------------------------------------------------

    @property
    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                timeout_ms = int(self.timeout_s * 1000)
                self._client = pymongo.MongoClient(
                    self.mongo_url,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=timeout_ms,
                    socketTimeoutMS=timeout_ms,
                    tz_aware=True,
                )
                self._client_pid = os.getpid()
            return self._client

    @property
    def database(self) -> Database[dict[str, Any]]:
        client = self.client
        if self._database_name:
            return client[self._database_name]
        return client.get_default_database(default="wallet")

    def collections(self) -> tuple[Collection[dict[str, Any]], Collection[dict[str, Any]]]:
        database = self.database
        if not self._indexes_ready:
            database[WALLETS].create_index(
                WALLET_KEY_INDEX,
                unique=True,
                name="unique_wallet_key",
            )
            database[LOG].create_index(
                [("mirror_state", 1), ("client_id", 1), ("wallet_seq", 1)], name="mirror_outbox"
            )
            # A wallet's history (support's pages) and the backfill's read of a page's log
            # entries (client_id $in) ask by wallet key: without it, a full scan each.
            database[LOG].create_index(
                [*WALLET_KEY_INDEX, ("created_at", 1)], name="wallet_history"
            )
            database[LOG].create_index(
                [("voided_transaction_id", 1)],
                unique=True,
                sparse=True,  # only void entries carry the field
                name="one_void_per_transaction",
            )
            self._indexes_ready = True
        return database[WALLETS], database[LOG]

    def guarded(self, operation: Callable[[], T]) -> T:
        """Run a store operation; MongoDB failures become StoreUnavailable."""
        try:
            return operation()
        except _Refusal as refusal:
            raise refusal.error from None
        except errors.WalletError:
            raise
        except PyMongoError as exc:
            raise errors.StoreUnavailable(f"MongoDB failed: {exc}") from exc

    def _transaction(
        self, callback: Callable[[ClientSession], T], wallet_mark: Callable[[], object]
    ) -> T:
        """Run `callback` in one transaction, retrying write conflicts while the wallet
        moves (`wallet_mark`: what it looks like now). Still for `lock_wait_s`: the wallet
        is held by a transaction nobody finishes (a killed worker's), so 503
        store_unavailable now; the client retries with the same id."""

        def attempt() -> T:
            with self.client.start_session() as session, session.start_transaction():
                return callback(session)

        retrying = Retrying(
            retry=retry_if_exception(_is_write_conflict),
            stop=stop_after_delay(CONTENDED_WAIT_MAX_S)
            | _WalletStalled(self.lock_wait_s, wallet_mark),
            wait=wait_random_exponential(multiplier=0.002, max=0.05),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except PyMongoError as exc:
            if not _is_write_conflict(exc):
                raise
            raise errors.StoreUnavailable(
                "The wallet is held by another write that does not finish; retry with the same id."
            ) from exc

    def _wallet_mark(self, key: WalletKey) -> Callable[[], object]:
        """The wallet's committed wallet_seq (None while it does not exist)."""

        def mark() -> object:
            wallets, _ = self.collections()
            return wallets.find_one(key_filter(key), {"_id": 0, "wallet_seq": 1})

        return mark

    def _voided_wallet_mark(self, transaction_id: str) -> Callable[[], object]:
        """The mark of the wallet a voided transaction belongs to."""

        def mark() -> object:
            _, log = self.collections()
            entry = log.find_one({"_id": transaction_id})
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
            wallets, log = self.collections()
            self._refuse_or_replay(
                log, session, transaction_id, TransactionKind.CREDIT, key, amount_minor
            )
            now = datetime.now(UTC)
            written_at = write_time(created_at or now)
            amount = decimal128(amount_minor, key.currency)
            wallet = wallets.find_one_and_update(
                key_filter(key),
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
                return_document=pymongo.ReturnDocument.AFTER,
                session=session,
            )
            assert wallet is not None, "an upsert returning the document after returns one"
            _refuse_past_balance_limit(wallet, key)
            return self._log_entry(
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
            wallets, log = self.collections()
            self._refuse_or_replay(
                log, session, reference_id, TransactionKind.DEBIT, key, amount_minor
            )
            now = datetime.now(UTC)
            written_at = write_time(created_at or now)
            wallet = _spend(wallets, key, amount_minor, now=now, session=session)
            if wallet is None:
                if wallets.find_one(key_filter(key), {"_id": 1}, session=session) is None:
                    raise _Refusal(errors.WalletNotFound(f"No wallet {key.describe()}."))
                raise _Refusal(
                    errors.InsufficientFunds(
                        f"Wallet {key.describe()} has less available credit than the amount."
                    )
                )
            return self._log_entry(
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

        try:
            return self._write(reference_id, key, TransactionKind.DEBIT, amount_minor, debit)
        except errors.InsufficientFunds:
            self._remember_refusal(
                reference_id, key, amount_minor, "insufficient_funds", made_by=made_by
            )
            raise

    def void_transaction(
        self,
        transaction_id: str,
        voided_by: str,
        reason: str,
        *,
        mirror: bool = True,
        voided_at: datetime | None = None,
    ) -> WalletResult:
        def void(session: ClientSession) -> WalletResult:
            wallets, log = self.collections()
            entry = _voidable_entry(log, transaction_id, session)
            key = key_of(entry)
            now = datetime.now(UTC)
            written_at = write_time(voided_at or now)
            wallet = _reverse_on_wallet(wallets, entry, key, now=now, session=session)
            balance = balance_of(wallet)
            log.update_one(
                {"_id": transaction_id},
                {
                    "$set": {
                        "state": TransactionState.VOIDED.value,
                        "voided_by": voided_by,
                        "void_reason": reason,
                        "voided_at": written_at,
                    }
                },
                session=session,
            )
            amount_minor = int(entry["amount_minor"])
            assert amount_minor > 0, "a logged transaction moves a positive amount"
            log.insert_one(
                {
                    "_id": ObjectId(),
                    "kind": "void",
                    "voided_transaction_id": transaction_id,
                    "voided_kind": entry["kind"],
                    **key_filter(key),
                    "amount": decimal128(amount_minor, key.currency),
                    "amount_minor": amount_minor,
                    "state": TransactionState.POSTED.value,
                    "voided_by": voided_by,
                    "void_reason": reason,
                    "balance_after": balance_fields(balance),
                    "wallet_seq": wallet["wallet_seq"],
                    "mirror_state": _mirror_state(mirror),
                    "created_at": written_at,
                },
                session=session,
            )
            updated = log.find_one({"_id": transaction_id}, session=session)
            assert updated is not None, "the entry just voided is in the log"
            return WalletResult(transaction=self._record(updated), balance=balance)

        def run() -> WalletResult:
            try:
                return self._transaction(void, self._voided_wallet_mark(transaction_id))
            except DuplicateKeyError:
                # A concurrent void of the same transaction committed first.
                raise errors.AlreadyVoided(
                    f"Transaction {transaction_id!r} was already voided."
                ) from None

        return self.guarded(run)

    # --- reads ------------------------------------------------------------------------------

    def get_balance(self, key: WalletKey) -> WalletBalance:
        return self.get_balance_and_seq(key)[0]

    def get_balance_and_seq(self, key: WalletKey) -> tuple[WalletBalance, int]:
        """The balance and the wallet_seq it stands at, from one document read (what a
        shadow comparison needs to compare at exactly the same point)."""

        def read() -> tuple[WalletBalance, int]:
            wallets, _ = self.collections()
            wallet = wallets.find_one(key_filter(key))
            if wallet is None:
                raise errors.WalletNotFound(f"No wallet {key.describe()}.")
            return balance_of(wallet), int(wallet.get("wallet_seq", 0))

        return self.guarded(read)

    def get_balances(self, client_id: str) -> list[WalletBalance]:
        def read() -> list[WalletBalance]:
            wallets, _ = self.collections()
            balances = [balance_of(w) for w in wallets.find({"client_id": client_id})]
            return sorted(balances, key=lambda balance: balance.key.sort_key())

        return self.guarded(read)

    def get_transaction(self, transaction_id: str) -> TransactionRecord:
        def read() -> TransactionRecord:
            _, log = self.collections()
            entry = log.find_one({"_id": transaction_id})
            if entry is None or entry.get("kind") == "void":
                raise errors.TransactionNotFound(f"No transaction {transaction_id!r}.")
            return self._record(entry)

        return self.guarded(read)

    def recent_log(self, key: WalletKey, limit: int = 20, skip: int = 0) -> list[dict[str, Any]]:
        """The wallet's latest transaction log entries, newest first, a page at a time (for
        support staff: one wallet's log is small enough for skip)."""

        def read() -> list[dict[str, Any]]:
            _, log = self.collections()
            found = log.find(key_filter(key)).sort([("created_at", -1), ("_id", -1)])
            return list(found.skip(skip).limit(limit))

        return self.guarded(read)

    # --- internals --------------------------------------------------------------------------

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
                return self._transaction(callback, self._wallet_mark(key))
            except _Replay as replay:
                return replay.result
            except DuplicateKeyError:
                # A concurrent request with the same id (or the wallet's first credit from
                # another id) committed first: the retry sees its outcome.
                try:
                    return self._transaction(callback, self._wallet_mark(key))
                except _Replay as replay:
                    return replay.result

        return self.guarded(run)

    def _refuse_or_replay(
        self,
        log: Any,
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
        if (
            entry.get("kind") != kind.value
            or key_of(entry) != key
            or (int(entry["amount_minor"]) != amount_minor)
        ):
            raise _Refusal(
                errors.IdempotencyConflict(
                    f"Id {transaction_id!r} was already used for a different request."
                )
            )
        if entry["state"] == TransactionState.FAILED:
            raise _Refusal(
                errors.InsufficientFunds(
                    f"Wallet {key.describe()} had less available credit than the amount."
                )
            )
        balance_after = entry["balance_after"]
        raise _Replay(
            WalletResult(
                transaction=self._record(entry),
                balance=WalletBalance(
                    key=key,
                    credit_minor=balance_after["credit_minor"],
                    debit_minor=balance_after["debit_minor"],
                    historical_credit_minor=balance_after["historical_credit_minor"],
                ),
                replayed=True,
            )
        )

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
        balance = balance_of(wallet)
        entry = {
            "_id": transaction_id,
            "kind": kind.value,
            **key_filter(key),
            "amount": decimal128(amount_minor, key.currency),
            "amount_minor": amount_minor,
            "state": TransactionState.POSTED.value,
            "failure_code": "",
            "made_by": made_by,
            "balance_after": balance_fields(balance),
            "wallet_seq": wallet["wallet_seq"],
            "mirror_state": _mirror_state(mirror),
            "created_at": written_at,
        }
        log.insert_one(entry, session=session)
        return WalletResult(transaction=self._record(entry), balance=balance)

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
        _, log = self.collections()
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
                    "mirror_state": MirrorState.NONE,
                    "created_at": write_time(datetime.now(UTC)),
                }
            )
        except DuplicateKeyError:
            pass  # recorded by a concurrent retry of the same refused debit
        except PyMongoError as exc:
            raise errors.StoreUnavailable(f"MongoDB failed: {exc}") from exc

    @staticmethod
    def _record(entry: dict[str, Any]) -> TransactionRecord:
        return TransactionRecord(
            transaction_id=entry["_id"],
            kind=TransactionKind(entry["kind"]),
            key=key_of(entry),
            amount_minor=int(entry["amount_minor"]),
            state=TransactionState(entry["state"]),
            created_at=entry["created_at"],
            failure_code=entry.get("failure_code", ""),
            made_by=entry.get("made_by", ""),
            voided_at=entry.get("voided_at"),
            voided_by=entry.get("voided_by", ""),
            void_reason=entry.get("void_reason", ""),
        )


class _Replay(Exception):
    """The id was applied before: carries the original result out of the transaction."""

    def __init__(self, result: WalletResult) -> None:
        super().__init__("replay")
        self.result = result


def _voidable_entry(
    log: Collection[dict[str, Any]], transaction_id: str, session: ClientSession
) -> dict[str, Any]:
    """The posted transaction to void, or a refusal: not found (or failed), already voided."""
    entry = log.find_one({"_id": transaction_id}, session=session)
    if entry is None or entry["state"] == TransactionState.FAILED:
        raise _Refusal(errors.TransactionNotFound(f"No posted transaction {transaction_id!r}."))
    if entry["state"] == TransactionState.VOIDED:
        raise _Refusal(errors.AlreadyVoided(f"Transaction {transaction_id!r} was already voided."))
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
    return wallets.find_one_and_update(
        {**key_filter(key), "credit": {"$gte": amount}},
        {
            "$inc": {
                "credit": decimal128(-amount_minor, key.currency),
                "debit": amount,
                "wallet_seq": 1,
            },
            "$set": {"updated_at": now},
        },
        return_document=pymongo.ReturnDocument.AFTER,
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
            raise _Refusal(
                errors.VoidWouldOverdraw(
                    f"Voiding credit {entry['_id']!r} would take the wallet below zero."
                )
            )
        return wallet
    wallet = wallets.find_one_and_update(
        key_filter(key),
        {
            "$inc": {"credit": amount, "historical_credit": amount, "wallet_seq": 1},
            "$set": {"updated_at": now},
        },
        return_document=pymongo.ReturnDocument.AFTER,
        session=session,
    )
    assert wallet is not None, "a logged transaction's wallet exists"
    _refuse_past_balance_limit(wallet, key)
    return wallet
