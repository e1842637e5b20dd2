"""What only the MongoDB store promises: atomic multi-document writes, the transaction log as
the mirror's outbox, and a quick StoreUnavailable when the server is gone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pymongo
import pytest

from domain import errors
from domain.ids import WalletKey
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import LogEntry, LogMarks, key_filter, key_of
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.mongo_wallets import update_wallet_as_read
from migration.outbox import LOG_MARKS
from wallet_site.embedded_mongo import free_loopback_port


@pytest.fixture
def store(mongo_url: str, mongo_database_name: str) -> MongoWalletStore:
    return MongoWalletStore(MongoDatabase(mongo_url, name=mongo_database_name), marks=LOG_MARKS)


@pytest.fixture
def admin(mongo_url: str) -> Iterator[pymongo.MongoClient]:
    client = pymongo.MongoClient(mongo_url)
    yield client
    client.admin.command("configureFailPoint", "failCommand", mode="off")
    client.close()


def key() -> WalletKey:
    return WalletKey(f"client-{uuid.uuid4().hex[:8]}", "USA", "USD")


def test_a_failure_on_the_log_write_leaves_the_balance_unchanged(
    store: MongoWalletStore, admin: pymongo.MongoClient
) -> None:
    wallet = key()
    store.add_credit(wallet, 1_000, "first")
    admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"times": 1},
        data={"failCommands": ["insert"], "errorCode": 2},
    )

    with pytest.raises(errors.StoreUnavailable):
        store.add_credit(wallet, 500, "second")

    assert store.get_balance(wallet).fields_minor() == (1_000, 0, 1_000)
    assert store.database.log().count_documents({"_id": "second"}) == 0


def test_every_write_lands_in_the_log_as_a_pending_outbox_entry_in_wallet_order(
    store: MongoWalletStore,
) -> None:
    wallet = key()
    store.add_credit(wallet, 1_000, "c-1")
    store.subtract_credit(wallet, 300, "d-1")
    store.void_transaction("d-1", voided_by="support", reason="refund")

    entries = list(store.database.log().find({"client_id": wallet.client_id}).sort("wallet_seq", 1))

    assert [
        (e["kind"], e.get("voided_transaction_id"), e["wallet_seq"], e["mirror_state"])
        for e in entries
    ] == [
        ("credit", None, 1, "pending"),
        ("debit", None, 2, "pending"),
        ("void", "d-1", 3, "pending"),
    ]
    assert [e["_id"] for e in entries[:2]] == ["c-1", "d-1"]


def test_each_log_entry_is_born_with_the_mark_the_store_was_given(
    mongo_url: str, mongo_database_name: str
) -> None:
    """The states are the migration's: the store writes whatever it is given, by kind."""
    marks = LogMarks(new_write="mark-new", copied_back="mark-back", refused="mark-refused")
    store = MongoWalletStore(MongoDatabase(mongo_url, name=mongo_database_name), marks=marks)
    wallet = key()
    store.add_credit(wallet, 100, "c-1")
    store.add_credit(wallet, 100, "c-back", mirror=False, created_at=datetime.now(UTC))
    store.void_transaction("c-back", voided_by="support", reason="refund", mirror=False)
    store.void_transaction("c-1", voided_by="support", reason="refund")
    with pytest.raises(errors.InsufficientFunds):
        store.subtract_credit(wallet, 500, "d-refused")

    entries = store.database.log().find({"client_id": wallet.client_id})

    assert {
        (e["kind"], e.get("voided_transaction_id", e["_id"]), e["mirror_state"]) for e in entries
    } == {
        ("credit", "c-1", "mark-new"),
        ("credit", "c-back", "mark-back"),
        ("void", "c-back", "mark-back"),
        ("void", "c-1", "mark-new"),
        ("debit", "d-refused", "mark-refused"),
    }


def test_the_recent_log_reads_each_entry_typed_newest_first(store: MongoWalletStore) -> None:
    wallet = key()
    store.add_credit(wallet, 1_000, "c-1", made_by="till-1")
    store.subtract_credit(wallet, 300, "d-1")
    store.void_transaction("d-1", voided_by="support", reason="refund")

    newest, middle, oldest = store.recent_log(wallet)

    assert (newest.kind, newest.transaction_id, newest.amount_minor) == ("void", "d-1", 300)
    assert newest.entry_id not in ("", "d-1")  # the void's own id
    assert (middle.transaction_id, middle.state, middle.voided_by) == ("d-1", "voided", "support")
    assert middle.void_reason == "refund"
    assert oldest == LogEntry(
        transaction_id="c-1",
        kind="credit",
        amount_minor=1_000,
        state="posted",
        mirror_state="pending",
        created_at=oldest.created_at,
        made_by="till-1",
        voided_by="",
        void_reason="",
        mirror_error="",
        entry_id="c-1",
    )
    assert [entry.transaction_id for entry in store.recent_log(wallet, limit=1, skip=2)] == ["c-1"]


def test_a_void_entry_is_keyed_outside_the_space_of_client_ids(store: MongoWalletStore) -> None:
    wallet = key()
    store.add_credit(wallet, 1_000, "c-1")
    store.void_transaction("c-1", voided_by="support", reason="refund")

    void_entry = store.database.log().find_one({"voided_transaction_id": "c-1"})

    assert void_entry["kind"] == "void"
    assert not isinstance(void_entry["_id"], str)


def test_a_retried_credit_writes_one_log_entry(store: MongoWalletStore) -> None:
    wallet = key()
    store.add_credit(wallet, 100, "once")

    store.add_credit(wallet, 100, "once")

    assert store.database.log().count_documents({"_id": "once"}) == 1


def test_balances_are_stored_as_decimal128_in_the_currencys_exponent(
    store: MongoWalletStore,
) -> None:
    wallet = WalletKey(f"client-{uuid.uuid4().hex[:8]}", "KWT", "KWD")
    store.add_credit(wallet, 1_234, "kwd-1")

    document = store.database.wallets().find_one({"client_id": wallet.client_id})

    assert str(document["credit"]) == "1.234"
    assert str(document["debit"]) == "0.000"


def test_an_unreachable_server_is_store_unavailable_within_the_timeout() -> None:
    silent = MongoWalletStore(
        MongoDatabase(
            f"mongodb://127.0.0.1:{free_loopback_port()}/wallet?directConnection=true",
            timeout_s=0.5,
        ),
        marks=LOG_MARKS,
    )
    started = time.monotonic()

    with pytest.raises(errors.StoreUnavailable):
        silent.get_balance(key())

    assert time.monotonic() - started < 5


def test_the_log_is_indexed_by_wallet_key_for_histories_and_the_backfill(
    store: MongoWalletStore,
) -> None:
    log = store.database.log()

    keys = {index["name"]: list(index["key"].items()) for index in log.list_indexes()}

    assert keys["wallet_history"] == [
        ("client_id", 1),
        ("country", 1),
        ("currency", 1),
        ("issuer_type_identifier", 1),
        ("created_at", 1),
    ]


def test_the_wallets_are_unique_on_the_key_in_its_stored_order(store: MongoWalletStore) -> None:
    indexes = {index["name"]: index for index in store.database.wallets().list_indexes()}

    assert indexes["unique_wallet_key"]["unique"]
    assert list(indexes["unique_wallet_key"]["key"].items()) == [
        ("client_id", 1),
        ("country", 1),
        ("currency", 1),
        ("issuer_type_identifier", 1),
    ]


def test_a_key_is_stored_under_mongodbs_own_field_names() -> None:
    stored = {
        "client_id": "alice",
        "country": "USA",
        "currency": "USD",
        "issuer_type_identifier": "",
    }
    assert key_filter(WalletKey("alice", "USA", "USD")) == stored
    assert list(key_filter(WalletKey("alice", "USA", "USD"))) == list(stored)
    assert key_filter(WalletKey("alice", "USA", "USD", "visa"))["issuer_type_identifier"] == "visa"
    assert key_of(stored) == WalletKey("alice", "USA", "USD")
    assert key_of({**stored, "issuer_type_identifier": "visa"}).issuer == "visa"
    del stored["issuer_type_identifier"]  # a legacy document without the field: no issuer
    assert key_of(stored) == WalletKey("alice", "USA", "USD")


def test_no_write_changes_its_wallet_by_find_and_modify(store: MongoWalletStore) -> None:
    """secantusdb scans every wallet document to write through a findAndModify (25 ms at
    2,000 wallets, growing with the collection): each write reaches its wallet through the
    key's index instead (`ledger.stores.mongo_wallets`)."""
    wallet = key()
    store.add_credit(wallet, 1_000, "c-1")
    store.database.db.command("profile", 2)
    try:
        store.add_credit(wallet, 500, "c-2")
        store.subtract_credit(wallet, 300, "d-1")
        store.void_transaction("d-1", voided_by="support", reason="refund")
        store.void_transaction("c-2", voided_by="support", reason="duplicate")
        store.place_hold(wallet, 100, "h-1", timeout_s=3_600)
        store.capture_hold("h-1", amount_minor=50)
    finally:
        store.database.db.command("profile", 0)
    commands = [
        next(iter(entry.get("command", {"?": 0})))
        for entry in store.database.db["system.profile"].find()
    ]

    assert "update" in commands
    assert "findAndModify" not in commands


def test_a_wallet_update_naming_a_wallet_seq_it_has_moved_past_is_a_write_conflict(
    store: MongoWalletStore,
) -> None:
    """A conditional write checks the wallet document its transaction read; a wallet moved
    since goes again (`MongoDatabase.transaction` retries a write conflict)."""
    wallet = key()
    store.add_credit(wallet, 1_000, "c-1")
    wallets = store.database.wallets()
    read = wallets.find_one(key_filter(wallet))
    store.add_credit(wallet, 1, "c-2")  # the wallet moves past what was read

    with (
        store.database.client.start_session() as session,
        session.start_transaction(),
        pytest.raises(pymongo.errors.OperationFailure) as conflict,
    ):
        update_wallet_as_read(
            wallets, wallet=read, update={"$inc": {"wallet_seq": 1}}, session=session
        )

    assert conflict.value.has_error_label("TransientTransactionError")
    assert store.get_balance(wallet).credit_minor == 1_001
