"""A batch on each store beside holds and resends: the store's own answers, item by item
(the API's are in test_batch_api), and on MongoDB the log the mirror reads."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from domain import errors
from domain.batches import BatchItem, BatchItemKind
from domain.history import HistoryQuery
from domain.ids import WalletKey
from domain.wallets import WalletResult, WalletStore
from ledger.stores.mongo_batch import MongoBatch
from ledger.stores.mongo_store import MongoWalletStore
from tests.conftest import build_store

HOUR_S = 3600


def new_key() -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD", issuer=None
    )


def item(kind: BatchItemKind, key: WalletKey, amount_minor: int) -> BatchItem:
    return BatchItem(
        kind=kind, key=key, amount_minor=amount_minor, transaction_id=f"id-{uuid.uuid4().hex}"
    )


def credit(key: WalletKey, amount_minor: int) -> BatchItem:
    return item(BatchItemKind.CREDIT, key, amount_minor)


def debit(key: WalletKey, amount_minor: int) -> BatchItem:
    return item(BatchItemKind.DEBIT, key, amount_minor)


def test_a_batch_debit_cannot_spend_held_money(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    wallet_store.place_hold(key, 600, f"hold-{uuid.uuid4().hex}", timeout_s=HOUR_S)

    outcomes = wallet_store.post_batch([debit(key, 300), debit(key, 200)], atomic=False)

    assert isinstance(outcomes[0], WalletResult)
    assert isinstance(outcomes[1], errors.InsufficientFunds)
    assert (outcomes[0].balance.credit_minor, outcomes[0].balance.held_minor) == (100, 600)


def test_an_expired_hold_no_longer_stops_a_batch_debit(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    wallet_store.place_hold(key, 800, f"hold-{uuid.uuid4().hex}", timeout_s=1)
    time.sleep(1.5)

    (outcome,) = wallet_store.post_batch([debit(key, 900)], atomic=True)

    assert isinstance(outcome, WalletResult)
    assert (outcome.balance.credit_minor, outcome.balance.held_minor) == (100, 0)
    assert wallet_store.get_balance(key).fields_minor() == (100, 900, 1_000)


def test_a_hold_a_batch_finds_expired_is_a_point_of_the_history_before_the_batch_debit(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    hold_id = f"hold-{uuid.uuid4().hex}"
    wallet_store.place_hold(key, 800, hold_id, timeout_s=1)
    time.sleep(1.5)
    batch_debit = debit(key, 900)

    wallet_store.post_batch([batch_debit], atomic=True)

    newest_first = wallet_store.history(HistoryQuery(key=key)).points
    assert [(p.kind.value, p.hold_id or p.transaction_id) for p in newest_first[:2]] == [
        ("debit", batch_debit.transaction_id),
        ("expire", hold_id),
    ]
    assert (newest_first[1].balance.credit_minor, newest_first[1].balance.held_minor) == (1_000, 0)


def test_an_independent_batchs_refused_debit_is_refused_alike_when_resent(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    items = [credit(key, 100), debit(key, 500), debit(key, 60)]
    first = wallet_store.post_batch(items, atomic=False)

    again = wallet_store.post_batch(items, atomic=False)

    assert isinstance(first[1], errors.InsufficientFunds)
    assert isinstance(again[1], errors.InsufficientFunds)
    assert [isinstance(o, WalletResult) and o.replayed for o in again] == [True, False, True]
    assert wallet_store.get_balance(key).fields_minor() == (40, 60, 100)


@pytest.fixture
def mongo_store(request: pytest.FixtureRequest, db: None) -> MongoWalletStore:
    store = build_store("mongo", request)
    assert isinstance(store, MongoWalletStore)
    return store


def test_a_batch_logs_each_wallets_items_with_consecutive_wallet_seqs_for_the_mirror(
    mongo_store: MongoWalletStore,
) -> None:
    wallet_store = mongo_store
    first, second = new_key(), new_key()
    wallet_store.add_credit(first, 1_000, f"tx-{uuid.uuid4().hex}")
    items = [
        debit(first, 1),
        credit(second, 5),
        debit(first, 2),
        debit(second, 9),
        credit(first, 3),
    ]

    wallet_store.post_batch(items, atomic=False)

    log = wallet_store.database.log()
    seqs = {
        entry["_id"]: entry.get("wallet_seq")
        for entry in log.find({"_id": {"$in": [i.transaction_id for i in items]}})
    }
    assert [seqs[i.transaction_id] for i in items] == [2, 1, 3, None, 4]
    wallets = wallet_store.database.wallets()
    assert wallets.find_one({"client_id": first.client_id})["wallet_seq"] == 4
    assert wallets.find_one({"client_id": second.client_id})["wallet_seq"] == 1


def test_a_mongo_batch_whose_wallet_another_write_moved_after_its_read_goes_again(
    mongo_store: MongoWalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    mongo_store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    read_wallets = MongoBatch._wallets
    reads: list[int] = []

    def read_then_a_racing_debit(batch: MongoBatch, *args: Any, **kwargs: Any) -> Any:
        wallets = read_wallets(batch, *args, **kwargs)
        if not reads:  # a debit of its own commits between the batch's read and its write
            mongo_store.subtract_credit(key, 700, f"ref-{uuid.uuid4().hex}")
        reads.append(1)
        return wallets

    monkeypatch.setattr(MongoBatch, "_wallets", read_then_a_racing_debit)

    outcomes = mongo_store.post_batch([debit(key, 200), debit(key, 200)], atomic=False)

    assert len(reads) == 2
    assert isinstance(outcomes[0], WalletResult)
    assert outcomes[0].balance.credit_minor == 100
    assert isinstance(outcomes[1], errors.InsufficientFunds)
    assert mongo_store.get_balance(key).fields_minor() == (100, 900, 1_000)
