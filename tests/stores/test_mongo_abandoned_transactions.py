"""A worker killed inside a MongoDB transaction (kill -9 mid-write): its wallet answers 503
fast while the dead transaction holds it, other wallets never notice, and the wallet is
writable again once the server's transaction lifetime reaps the transaction."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from domain import errors
from domain.ids import WalletKey
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from migration.outbox import LOG_MARKS
from wallet_site.embedded_mongo import EmbeddedMongo, start_embedded_mongo

TRANSACTION_LIFETIME_S = 2.0
LOCK_WAIT_S = 0.3


@pytest.fixture(scope="module")
def short_lived_server() -> Iterator[EmbeddedMongo]:
    """Its own server, so the small transaction lifetime touches no other test."""
    server = start_embedded_mongo(transaction_lifetime_s=TRANSACTION_LIFETIME_S)
    yield server
    server.stop()


@pytest.fixture
def store(short_lived_server: EmbeddedMongo) -> MongoWalletStore:
    return MongoWalletStore(
        MongoDatabase(
            short_lived_server.url,
            name=f"wallet_test_{uuid.uuid4().hex[:12]}",
            lock_wait_s=LOCK_WAIT_S,
        ),
        marks=LOG_MARKS,
    )


def new_key() -> WalletKey:
    return WalletKey(f"client-{uuid.uuid4().hex[:8]}", "USA", "USD")


def _credit_and_die_before_commit(store: MongoWalletStore, key: WalletKey) -> None:
    """In a forked child: a credit whose process is killed (SIGKILL) after the wallet
    document was written, before the transaction commits."""

    def killed(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    store._log_entry = killed  # type: ignore[method-assign]  # the process dies mid-write
    store.add_credit(key, 999, "dies-mid-write")


def kill_a_writer_mid_transaction(store: MongoWalletStore, key: WalletKey) -> float:
    """Returns when the writer died (time.monotonic())."""
    child = multiprocessing.get_context("fork").Process(
        target=_credit_and_die_before_commit, args=(store, key)
    )
    child.start()
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    return time.monotonic()


def timed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        outcome = call()
    except errors.WalletError as exc:
        outcome = exc
    return time.monotonic() - started, outcome


def test_a_wallet_locked_by_a_killed_writer_answers_503_within_the_lock_wait(
    store: MongoWalletStore,
) -> None:
    locked = new_key()
    store.add_credit(locked, 1_000, "before")
    kill_a_writer_mid_transaction(store, locked)

    elapsed_s, outcome = timed(lambda: store.add_credit(locked, 100, "retried-by-client"))

    assert isinstance(outcome, errors.StoreUnavailable)
    assert outcome.code == "store_unavailable"
    assert elapsed_s < LOCK_WAIT_S + 0.5


def test_other_wallets_are_written_at_once_while_one_is_locked(store: MongoWalletStore) -> None:
    locked, other = new_key(), new_key()
    store.add_credit(locked, 1_000, "locked-before")
    kill_a_writer_mid_transaction(store, locked)

    elapsed_s, outcome = timed(lambda: store.add_credit(other, 100, "other-wallet"))

    assert outcome.balance.fields_minor() == (100, 0, 100)
    assert elapsed_s < 0.5


def test_a_wallet_locked_by_a_killed_writer_is_writable_after_the_transaction_lifetime(
    store: MongoWalletStore,
) -> None:
    locked = new_key()
    store.add_credit(locked, 1_000, "before-lifetime")
    died_at = kill_a_writer_mid_transaction(store, locked)
    time.sleep(max(0.0, died_at + TRANSACTION_LIFETIME_S + 0.5 - time.monotonic()))

    # The client retries the request whose worker was killed, with the same id.
    result = store.add_credit(locked, 999, "dies-mid-write")

    assert result.replayed is False  # the killed attempt never committed: applied now, once
    assert result.balance.fields_minor() == (1_999, 0, 1_999)
    assert store.get_balance(locked).fields_minor() == (1_999, 0, 1_999)
