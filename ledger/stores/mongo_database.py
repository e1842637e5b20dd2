"""The MongoDB database the wallet store and the migration's view of it share.

One handle per process and database: a MongoClient (re-created after a fork, since a client
must not cross one), the two collections with their indexes, and what every reader and writer
of them needs: failures mapped to StoreUnavailable (`guarded`) and multi-document
transactions whose write conflicts are retried while the wallet moves (`transaction`).

Collections:
- `payments_wallets` (`wallets()`): one document per wallet, unique on the wallet key.
- `wallet_transactions` (`log()`): the transaction log, one entry per credit, debit and void,
  written in the same transaction as the balance it changes; the migration reads it as the
  mirror's outbox.

A server that does not answer is `StoreUnavailable` within MONGO_TIMEOUT_S, never a long hang.
The migration's jobs read through a handle of their own (`patient`) that waits longer for an
answer from a server that is up but busy (MIGRATION_JOB_MONGO_READ_TIMEOUT_S) and reads again,
a bounded number of times, where a read failed for a moment (`read`;
MIGRATION_JOB_MONGO_READ_ATTEMPTS).
A wallet locked by a transaction its dead process abandoned stays locked until the server's
transaction lifetime reaps it, and no request may wait that long: write conflicts are retried
while the wallet moves, but for at most MONGO_LOCK_WAIT_S while it stands still.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pymongo
from django.conf import settings
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import AutoReconnect, PyMongoError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from domain import errors
from ledger.stores.mongo_documents import EVENT_PENDING, MONGO_KEY_FIELDS

log = logging.getLogger(__name__)
T = TypeVar("T")
WALLETS = "payments_wallets"
LOG = "wallet_transactions"
HOLDS = "wallet_holds"
# The fields that name a wallet, in both collections (`mongo_documents.key_filter`).
WALLET_KEY_INDEX = [(name, 1) for name in MONGO_KEY_FIELDS]
# However busy a wallet, a request stops retrying its write conflicts after this long.
CONTENDED_WAIT_MAX_S = 20.0
# A read tried again (`MongoDatabase.read`) waits this long first, doubling each time up to
# the most: a server that stalled for a moment (a failover's election takes about ten
# seconds) has answered by then.
READ_RETRY_WAIT_S = 2.0
READ_RETRY_WAIT_MAX_S = 30.0


class Refusal(Exception):
    """Carries a WalletError out of a transaction callback so the transaction aborts;
    `guarded` raises the error itself."""

    def __init__(self, error: errors.WalletError) -> None:
        super().__init__(error.message)
        self.error = error


class WalletContended(errors.StoreUnavailable):
    """A transaction's write conflicts went on past its wait: its wallets kept moving (or
    a transaction nobody finishes holds one). 503 store_unavailable, as its base; a batch
    catches it to go again in smaller transactions (`mongo_batch`)."""


def _is_write_conflict(exc: BaseException) -> bool:
    return (
        isinstance(exc, PyMongoError)
        and exc.has_error_label("TransientTransactionError")
        and (not isinstance(exc, pymongo.errors.ConnectionFailure))
    )


def is_transient(exc: BaseException) -> bool:
    """A read that failed for a moment and may answer if asked again: no answer in time
    (pymongo says `timeout`), the connection lost, or no server to select yet. Anything
    else (a malformed query, a document that cannot be decoded) fails the same way again."""
    cause = exc.__cause__ if isinstance(exc, errors.StoreUnavailable) else exc
    return isinstance(cause, PyMongoError) and (isinstance(cause, AutoReconnect) or cause.timeout)


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


class MongoDatabase:
    """The wallet database at `mongo_url` (`name`, else the URL's own database, else
    "wallet"), connected lazily and once per process."""

    def __init__(
        self,
        mongo_url: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
        lock_wait_s: float | None = None,
        read_timeout_s: float | None = None,
        read_attempts: int = 1,
        read_retry_wait_s: float = READ_RETRY_WAIT_S,
    ) -> None:
        """`timeout_s`: to find the server and connect, and (unless `read_timeout_s`) for
        each answer. `read_attempts`: how many times `read` tries a read that failed for a
        moment (1: once, as a request must: it answers 503 and its client retries), the
        n-th after waiting `read_retry_wait_s` x 2^(n-2)."""
        assert read_attempts >= 1, "a read is tried at least once"
        self.mongo_url = mongo_url or settings.MONGO_URL
        self._name = name
        self.timeout_s = timeout_s if timeout_s is not None else settings.MONGO_TIMEOUT_S
        self.read_timeout_s = read_timeout_s if read_timeout_s is not None else self.timeout_s
        self.lock_wait_s = lock_wait_s if lock_wait_s is not None else settings.MONGO_LOCK_WAIT_S
        self.read_attempts = read_attempts
        self.read_retry_wait_s = read_retry_wait_s
        self._client: pymongo.MongoClient[dict[str, Any]] | None = None
        self._client_pid: int | None = None
        self._indexes_ready = False
        self._lock = threading.Lock()

    def patient(
        self,
        read_timeout_s: float,
        *,
        read_attempts: int = 1,
        read_retry_wait_s: float = READ_RETRY_WAIT_S,
    ) -> MongoDatabase:
        """The same database through a client of its own that waits up to `read_timeout_s`
        for each answer, for a batch job: a server that is up but busy (the embedded one
        stalls every request while it builds a large find's result, 13-14 s at a million
        wallets) is waited out, not a failed job; a read that still fails for a moment is
        tried up to `read_attempts` times (`read`). A server that is down still fails
        within `timeout_s`, to connect, on each try."""
        return MongoDatabase(
            self.mongo_url,
            name=self._name,
            timeout_s=self.timeout_s,
            lock_wait_s=self.lock_wait_s,
            read_timeout_s=read_timeout_s,
            read_attempts=read_attempts,
            read_retry_wait_s=read_retry_wait_s,
        )

    def close(self) -> None:
        """Close the client, if one was opened (the next use opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                timeout_ms = int(self.timeout_s * 1000)
                self._client = pymongo.MongoClient(
                    self.mongo_url,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=timeout_ms,
                    socketTimeoutMS=int(self.read_timeout_s * 1000),
                    tz_aware=True,
                )
                self._client_pid = os.getpid()
            return self._client

    @property
    def db(self) -> Database[dict[str, Any]]:
        """The pymongo database, as is (no index made): for seeding and dropping it."""
        client = self.client
        if self._name:
            return client[self._name]
        return client.get_default_database(default="wallet")

    def wallets(self) -> Collection[dict[str, Any]]:
        """The wallet documents (`payments_wallets`), indexed."""
        self.ensure_indexes()
        return self.db[WALLETS]

    def log(self) -> Collection[dict[str, Any]]:
        """The transaction log (`wallet_transactions`), indexed."""
        self.ensure_indexes()
        return self.db[LOG]

    def holds(self) -> Collection[dict[str, Any]]:
        """The holds (`wallet_holds`, one document per hold id), indexed."""
        self.ensure_indexes()
        return self.db[HOLDS]

    def ensure_indexes(self) -> None:
        """Both collections' indexes, made once per handle (creating one that exists is a
        no-op on the server)."""
        if self._indexes_ready:
            return
        database = self.db
        database[WALLETS].create_index(WALLET_KEY_INDEX, unique=True, name="unique_wallet_key")
        # Phase 4's entry: the wallets written since a reconciliation run (every write sets
        # `updated_at`), and the log entries the mirror applied since (migration.entry_check).
        database[WALLETS].create_index([("updated_at", 1)], name="wallets_written")
        database[LOG].create_index([("mirror_updated_at", 1)], sparse=True, name="mirror_updated")
        database[LOG].create_index(
            [("mirror_state", 1), ("client_id", 1), ("wallet_seq", 1)], name="mirror_outbox"
        )
        # A wallet's history (support's pages) and the backfill's read of a page's log
        # entries (client_id $in) ask by wallet key: without it, a full scan each.
        database[LOG].create_index([*WALLET_KEY_INDEX, ("created_at", 1)], name="wallet_history")
        # A wallet's balance history (the API's): its entries in wallet_seq order.
        database[LOG].create_index(
            [*WALLET_KEY_INDEX, ("wallet_seq", -1)], name="wallet_balance_history"
        )
        database[LOG].create_index(
            [("voided_transaction_id", 1)],
            unique=True,
            sparse=True,  # only void entries carry the field
            name="one_void_per_transaction",
        )
        # A hold's events in the log (a history cursor names one by hold id and event).
        database[LOG].create_index(
            [("hold_id", 1)],
            sparse=True,  # only hold events carry the field
            name="hold_events",
        )
        # The entries the event feed has not collected yet (only they carry the field), oldest
        # first: a batch never holds a wallet's later entry without its earlier ones.
        database[LOG].create_index(
            [(EVENT_PENDING, 1), ("created_at", 1)], sparse=True, name="events_pending"
        )
        # A wallet's open holds due to expire (every write of the wallet, and its reads), and
        # the sweep's due holds of every wallet.
        database[HOLDS].create_index(
            [*WALLET_KEY_INDEX, ("state", 1), ("expires_at", 1)], name="wallet_open_holds"
        )
        database[HOLDS].create_index([("state", 1), ("expires_at", 1)], name="holds_due")
        self._indexes_ready = True

    def ping(self, *, timeout_s: float) -> None:
        """Ask the server to answer within `timeout_s` (pymongo's client-side timeout bounds
        server selection too); a PyMongoError when it does not (readiness, `/readyz`)."""
        with pymongo.timeout(timeout_s):
            self.db.command("ping")

    def guarded(self, operation: Callable[[], T]) -> T:
        """Run an operation on the database; MongoDB failures become StoreUnavailable (a
        Refusal raised inside becomes its WalletError)."""
        try:
            return operation()
        except Refusal as refusal:
            raise refusal.error from None
        except errors.WalletError:
            raise
        except PyMongoError as exc:
            raise errors.StoreUnavailable(f"MongoDB failed: {exc}") from exc

    def read(self, operation: Callable[[], T]) -> T:
        """`guarded` for an operation that only reads, so asking again is harmless: one
        that failed for a moment (`is_transient`) is tried up to `read_attempts` times in
        all. pymongo retries some failed reads once, at once; this waits between tries, long
        enough for a stalled server to answer again. Writes are never tried again here: an
        update whose answer was lost may have been applied. A request's handle (one try)
        reads as `guarded` does, with no retry machinery on its path."""
        if self.read_attempts == 1:
            return self.guarded(operation)
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.read_attempts),
            # tenacity waits multiplier x 2^(tries so far - 1): w, 2w, 4w... up to the most.
            wait=wait_exponential(multiplier=self.read_retry_wait_s, max=READ_RETRY_WAIT_MAX_S),
            before_sleep=_log_read_retry,
            reraise=True,
        )
        return retrying(lambda: self.guarded(operation))

    def transaction(
        self,
        callback: Callable[[ClientSession], T],
        *,
        wallet_mark: Callable[[], object],
        wait_s: float | None = None,
    ) -> T:
        """Run `callback` in one transaction, retrying write conflicts while the wallet
        moves (`wallet_mark`: what it looks like now), for at most CONTENDED_WAIT_MAX_S
        (`wait_s`: less). Still for `lock_wait_s`: the wallet is held by a transaction
        nobody finishes (a killed worker's), so 503 store_unavailable now
        (`WalletContended`); the client retries with the same id."""

        def attempt() -> T:
            with self.client.start_session() as session, session.start_transaction():
                return callback(session)

        retrying = Retrying(
            retry=retry_if_exception(_is_write_conflict),
            stop=stop_after_delay(CONTENDED_WAIT_MAX_S if wait_s is None else wait_s)
            | _WalletStalled(self.lock_wait_s, wallet_mark),
            wait=wait_random_exponential(multiplier=0.002, max=0.05),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except PyMongoError as exc:
            if not _is_write_conflict(exc):
                raise
            raise WalletContended(
                "The wallet is held by another write that does not finish; retry with the same id."
            ) from exc


def _log_read_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait_s = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "MongoDB read failed for a moment (try %d): %s; trying again in %.1f s",
        state.attempt_number,
        exc,
        wait_s,
    )
