"""A wallet's history in TigerBeetle (ledger/history.py): the selectors support's page, the
shadow reads, the copy back and the store's replays read, and the wallet-level errors they
raise."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain import errors
from domain.ids import WalletKey
from ledger import history
from ledger.backends import LedgerBackend
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from registry.accounts import find_account
from tests.conftest import ledger_scope
from tests.ledger.builders import UnreachableLedger

pytestmark = pytest.mark.django_db


def new_key() -> WalletKey:
    return WalletKey(client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD")


def test_a_wallets_history_pages_through_its_own_transfers_without_limit_bookkeeping(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    store.add_credit(key, 700, f"tx-{uuid.uuid4().hex}")
    reference = f"ref-{uuid.uuid4().hex}"
    store.subtract_credit(key, 200, reference)
    store.add_credit(key, 50, f"tx-{uuid.uuid4().hex}")
    store.void_transaction(reference, voided_by="support", reason="refund")  # credits the wallet

    pages, balances, before = [], [], 0
    for _ in range(5):
        page = history.recent_transfers(
            wallet_ledger_backend, key, limit=1, before_timestamp=before
        )
        balances += history.balance_history(
            wallet_ledger_backend, key, limit=1, before_timestamp=before
        )
        if not page:
            break
        pages += page
        before = page[-1].timestamp

    assert [transfer.amount for transfer in pages] == [200, 50, 200, 700]
    assert [balance.fields_minor() for balance in balances] == [
        (750, 200, 950),
        (550, 200, 750),
        (500, 200, 700),
        (700, 0, 700),
    ]
    assert [t.amount for t in history.recent_transfers(wallet_ledger_backend, key, limit=3)] == [
        200,
        50,
        200,
    ]
    assert len(history.balance_history(wallet_ledger_backend, key, limit=10)) == 4


def test_the_balance_before_a_transfer_is_what_the_wallet_held_just_before_it(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    first, second = f"tx-{uuid.uuid4().hex}", f"ref-{uuid.uuid4().hex}"
    store.add_credit(key, 700, first)
    store.subtract_credit(key, 200, second)
    times = history.transfer_timestamps(
        wallet_ledger_backend,
        [
            ledger_scope().ids.transaction_transfer_id(first),
            ledger_scope().ids.transaction_transfer_id(second),
        ],
    )

    before_first = history.balance_before(
        wallet_ledger_backend,
        key,
        tb_timestamp=times[ledger_scope().ids.transaction_transfer_id(first)],
    )
    before_second = history.balance_before(
        wallet_ledger_backend,
        key,
        tb_timestamp=times[ledger_scope().ids.transaction_transfer_id(second)],
    )

    assert before_first.fields_minor() == (0, 0, 0)
    assert before_second.fields_minor() == (700, 0, 700)


def test_the_balance_at_a_transfer_is_the_one_right_after_it(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    first = f"tx-{uuid.uuid4().hex}"
    store.add_credit(key, 700, first)
    store.subtract_credit(key, 200, f"ref-{uuid.uuid4().hex}")
    registered = find_account(key)
    assert registered is not None
    transfer_id = ledger_scope().ids.transaction_transfer_id(first)
    timestamp = history.transfer_timestamps(wallet_ledger_backend, [transfer_id])[transfer_id]

    balance = history.balance_at(
        wallet_ledger_backend, key, tb_account_id=registered.tb_account_id, tb_timestamp=timestamp
    )

    assert balance.fields_minor() == (700, 0, 700)
    assert balance.as_of_tb_timestamp == timestamp
    with pytest.raises(errors.StoreUnavailable, match="no balance snapshot"):
        history.balance_at(
            wallet_ledger_backend,
            key,
            tb_account_id=registered.tb_account_id,
            tb_timestamp=timestamp + 1,
        )


def test_lookups_by_transfer_id_leave_missing_ids_out(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    posted = f"tx-{uuid.uuid4().hex}"
    store.add_credit(new_key(), 300, posted)
    posted_id, missing_id = (
        ledger_scope().ids.transaction_transfer_id(posted),
        ledger_scope().ids.transaction_transfer_id("missing"),
    )

    found = history.transfers_by_id(wallet_ledger_backend, [posted_id, missing_id])
    times = history.transfer_timestamps(wallet_ledger_backend, [posted_id, missing_id])

    assert list(found) == [posted_id] and found[posted_id].amount == 300
    assert list(times) == [posted_id] and times[posted_id] == found[posted_id].timestamp


def test_no_ids_asks_the_ledger_nothing() -> None:
    ledger = UnreachableLedger()

    assert history.transfer_timestamps(ledger, []) == {}
    assert ledger.asked == 0


@pytest.mark.parametrize(
    "read",
    [
        lambda ledger, key: history.recent_transfers(ledger, key),
        lambda ledger, key: history.balance_history(ledger, key),
        lambda ledger, key: history.balance_before(ledger, key, tb_timestamp=10),
    ],
    ids=["recent_transfers", "balance_history", "balance_before"],
)
def test_a_wallets_history_of_an_unregistered_wallet_is_wallet_not_found(read: Any) -> None:
    ledger = UnreachableLedger()

    with pytest.raises(errors.WalletNotFound):
        read(ledger, new_key())

    assert ledger.asked == 0


@pytest.mark.parametrize(
    "read",
    [
        lambda ledger, key, account_id: history.recent_transfers(ledger, key),
        lambda ledger, key, account_id: history.balance_history(ledger, key),
        lambda ledger, key, account_id: history.balance_before(ledger, key, tb_timestamp=10),
        lambda ledger, key, account_id: history.balance_at(
            ledger, key, tb_account_id=account_id, tb_timestamp=10
        ),
        lambda ledger, key, account_id: history.transfers_by_id(ledger, [1]),
        lambda ledger, key, account_id: history.transfer_timestamps(ledger, [1]),
    ],
    ids=[
        "recent_transfers",
        "balance_history",
        "balance_before",
        "balance_at",
        "transfers_by_id",
        "transfer_timestamps",
    ],
)
def test_a_ledger_that_does_not_answer_is_store_unavailable(
    wallet_ledger_backend: LedgerBackend, read: Any
) -> None:
    key = new_key()
    TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope()).add_credit(
        key, 100, f"tx-{uuid.uuid4().hex}"
    )
    registered = find_account(key)
    assert registered is not None

    with pytest.raises(errors.StoreUnavailable, match="TigerBeetle is unavailable"):
        read(UnreachableLedger(), key, registered.tb_account_id)
