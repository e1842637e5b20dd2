"""Two promises every store keeps alike (run once per store): a client's id is only ever a
client's id (no internal key shares that space), and one documented balance limit."""

from __future__ import annotations

import uuid

import pytest

from domain import errors
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import TransactionState, WalletStore


def new_key() -> WalletKey:
    return WalletKey(client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD")


def fields(store: WalletStore, key: WalletKey) -> tuple[int, int, int]:
    return store.get_balance(key).fields_minor()


# --- item 11: internal keys never share the clients' id space ---------------------------------


def test_a_credit_whose_id_looks_like_a_void_key_does_not_block_voiding_the_other(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    original = f"tx-{uuid.uuid4().hex}"
    wallet_store.add_credit(key, 1_000, original)
    wallet_store.add_credit(key, 300, f"void:{original}")

    result = wallet_store.void_transaction(original, "support", "refund")

    assert result.transaction.state == TransactionState.VOIDED
    assert fields(wallet_store, key) == (300, 1_000, 1_300)


def test_voiding_a_transaction_leaves_the_id_void_prefixed_free_for_a_client(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    original = f"tx-{uuid.uuid4().hex}"
    wallet_store.add_credit(key, 1_000, original)
    wallet_store.void_transaction(original, "support", "refund")

    result = wallet_store.add_credit(key, 200, f"void:{original}")

    assert result.replayed is False
    assert result.transaction.transaction_id == f"void:{original}"
    assert fields(wallet_store, key) == (200, 1_000, 1_200)


def test_an_id_shaped_like_a_void_key_is_an_ordinary_id_to_read_and_void(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    original = f"tx-{uuid.uuid4().hex}"
    wallet_store.add_credit(key, 1_000, original)
    wallet_store.void_transaction(original, "support", "refund")
    lookalike = f"void:{original}"
    wallet_store.add_credit(key, 200, lookalike)

    read = wallet_store.get_transaction(lookalike)
    voided = wallet_store.void_transaction(lookalike, "support", "mistake")

    assert (read.amount_minor, read.state) == (200, TransactionState.POSTED)
    assert voided.transaction.state == TransactionState.VOIDED
    assert wallet_store.get_transaction(original).state == TransactionState.VOIDED
    assert fields(wallet_store, key) == (0, 1_200, 1_200)


# --- item 10: one balance limit on both stores ------------------------------------------------


def test_a_credit_that_would_take_the_balance_past_the_limit_is_refused_and_posts_nothing(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, BALANCE_MINOR_MAX - 10, f"tx-{uuid.uuid4().hex}")
    crossing = f"tx-{uuid.uuid4().hex}"

    with pytest.raises(errors.BalanceLimitExceeded) as refused:
        wallet_store.add_credit(key, 11, crossing)

    assert refused.value.http_status == 422
    assert refused.value.code == "balance_limit_exceeded"
    assert fields(wallet_store, key) == (BALANCE_MINOR_MAX - 10, 0, BALANCE_MINOR_MAX - 10)
    with pytest.raises(errors.TransactionNotFound):
        wallet_store.get_transaction(crossing)


def test_a_credit_up_to_the_limit_exactly_posts(wallet_store: WalletStore) -> None:
    key = new_key()
    wallet_store.add_credit(key, BALANCE_MINOR_MAX - 10, f"tx-{uuid.uuid4().hex}")

    wallet_store.add_credit(key, 10, f"tx-{uuid.uuid4().hex}")

    assert fields(wallet_store, key) == (BALANCE_MINOR_MAX, 0, BALANCE_MINOR_MAX)


def test_the_limit_bounds_historical_credit_so_spending_does_not_lift_it(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, BALANCE_MINOR_MAX, f"tx-{uuid.uuid4().hex}")
    wallet_store.subtract_credit(key, BALANCE_MINOR_MAX, f"ref-{uuid.uuid4().hex}")

    with pytest.raises(errors.BalanceLimitExceeded):
        wallet_store.add_credit(key, 1, f"tx-{uuid.uuid4().hex}")

    assert fields(wallet_store, key) == (0, BALANCE_MINOR_MAX, BALANCE_MINOR_MAX)


def test_a_void_of_a_debit_that_would_cross_the_limit_is_refused_and_changes_nothing(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    wallet_store.add_credit(key, 100, f"tx-{uuid.uuid4().hex}")
    reference = f"ref-{uuid.uuid4().hex}"
    wallet_store.subtract_credit(key, 100, reference)
    wallet_store.add_credit(key, BALANCE_MINOR_MAX - 150, f"tx-{uuid.uuid4().hex}")

    with pytest.raises(errors.BalanceLimitExceeded):
        wallet_store.void_transaction(reference, "support", "refund")

    assert fields(wallet_store, key) == (BALANCE_MINOR_MAX - 150, 100, BALANCE_MINOR_MAX - 50)
    assert wallet_store.get_transaction(reference).state == TransactionState.POSTED
