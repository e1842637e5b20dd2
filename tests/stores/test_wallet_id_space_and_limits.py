"""Two promises every store keeps alike (run once per store): a client's id is only ever a
client's id (no internal key shares that space), and one documented balance limit."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from tigerbeetle import CreateAccountStatus, CreateTransferResult, CreateTransferStatus, Transfer

from domain import errors
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX, ledger_for_currency
from domain.wallets import TransactionState, WalletResult, WalletStore
from ledger.backends import LedgerBackend
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import credit_transfer, system_account, wallet_account
from registry.accounts import find_account, forget, register_account
from registry.models import WalletAccount
from tests.concurrency import run_concurrently
from tests.conftest import ledger_scope

RACE_TIMEOUT_S = 10.0


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

    result = wallet_store.void_transaction(original, voided_by="support", reason="refund")

    assert result.transaction.state == TransactionState.VOIDED
    assert fields(wallet_store, key) == (300, 1_000, 1_300)


def test_voiding_a_transaction_leaves_the_id_void_prefixed_free_for_a_client(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    original = f"tx-{uuid.uuid4().hex}"
    wallet_store.add_credit(key, 1_000, original)
    wallet_store.void_transaction(original, voided_by="support", reason="refund")

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
    wallet_store.void_transaction(original, voided_by="support", reason="refund")
    lookalike = f"void:{original}"
    wallet_store.add_credit(key, 200, lookalike)

    read = wallet_store.get_transaction(lookalike)
    voided = wallet_store.void_transaction(lookalike, voided_by="support", reason="mistake")

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
        wallet_store.void_transaction(reference, voided_by="support", reason="refund")

    assert fields(wallet_store, key) == (BALANCE_MINOR_MAX - 150, 100, BALANCE_MINOR_MAX - 50)
    assert wallet_store.get_transaction(reference).state == TransactionState.POSTED


class PostsTogether:
    """A ledger backend (around the real one) whose create_transfers calls wait for each other
    at a barrier: every racing write has done all its reads before any of them posts, the
    interleaving a read-then-post limit check loses."""

    def __init__(self, backend: LedgerBackend, parties: int) -> None:
        self._backend = backend
        self._barrier = threading.Barrier(parties, timeout=RACE_TIMEOUT_S)

    def create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult]:
        self._barrier.wait()
        return self._backend.create_transfers(transfers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def racing(store: WalletStore, parties: int) -> WalletStore:
    """The store whose racing writes post together (the TigerBeetle store; the MongoDB store
    races as it is, its check runs inside the write's transaction)."""
    if isinstance(store, TigerBeetleWalletStore):
        racing = PostsTogether(store.backend, parties)
        return TigerBeetleWalletStore(backend=racing, scope=store.scope)
    return store


def outcome(write: Any) -> WalletResult | str:
    try:
        result: WalletResult = write()
    except errors.BalanceLimitExceeded:
        return "refused"
    return result


def test_two_credits_racing_at_the_limit_cannot_both_post(
    committed_wallet_store: WalletStore,
) -> None:
    key = new_key()
    committed_wallet_store.add_credit(key, BALANCE_MINOR_MAX - 100, f"tx-{uuid.uuid4().hex}")
    store = racing(committed_wallet_store, parties=2)
    ids = [f"tx-{uuid.uuid4().hex}" for _ in range(2)]

    outcomes = run_concurrently(
        lambda transaction_id: outcome(lambda: store.add_credit(key, 60, transaction_id)),
        ids,
        workers=2,
    )

    posted = [result for result in outcomes if isinstance(result, WalletResult)]
    assert outcomes.count("refused") == 1
    assert [result.balance.fields_minor() for result in posted] == [
        (BALANCE_MINOR_MAX - 40, 0, BALANCE_MINOR_MAX - 40)
    ]
    assert fields(committed_wallet_store, key) == (
        BALANCE_MINOR_MAX - 40,
        0,
        BALANCE_MINOR_MAX - 40,
    )


def test_a_credit_and_a_void_of_a_debit_racing_at_the_limit_cannot_both_post(
    committed_wallet_store: WalletStore,
) -> None:
    key = new_key()
    committed_wallet_store.add_credit(key, 100, f"tx-{uuid.uuid4().hex}")
    reference = f"ref-{uuid.uuid4().hex}"
    committed_wallet_store.subtract_credit(key, 100, reference)
    committed_wallet_store.add_credit(key, BALANCE_MINOR_MAX - 250, f"tx-{uuid.uuid4().hex}")
    store = racing(committed_wallet_store, parties=2)
    credit_id = f"tx-{uuid.uuid4().hex}"
    writes = {
        "credit": lambda: store.add_credit(key, 100, credit_id),
        "void": lambda: store.void_transaction(reference, voided_by="support", reason="refund"),
    }

    outcomes = dict(
        zip(writes, run_concurrently(lambda name: outcome(writes[name]), writes, 2), strict=True)
    )

    assert list(outcomes.values()).count("refused") == 1
    # Either one adds 100 to the credits: the same balance whichever won.
    assert fields(committed_wallet_store, key) == (
        BALANCE_MINOR_MAX - 150,
        100,
        BALANCE_MINOR_MAX - 50,
    )
    voided = committed_wallet_store.get_transaction(reference).state == TransactionState.VOIDED
    assert voided == (outcomes["credit"] == "refused")
    if voided:
        with pytest.raises(errors.TransactionNotFound):
            committed_wallet_store.get_transaction(credit_id)
    else:
        assert committed_wallet_store.get_transaction(credit_id).amount_minor == 100


def test_a_retry_of_a_credit_whose_registry_row_was_lost_is_replayed_and_registered(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    """A credit TigerBeetle holds (posted by a request that crashed before its registry row,
    or replayed by the mirror) whose row is missing: the retry answers it as the original
    and writes the row."""
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    store.add_credit(key, 400, f"tx-{uuid.uuid4().hex}")
    registered = find_account(key)
    assert registered is not None
    transaction_id = f"tx-{uuid.uuid4().hex}"
    earlier = credit_transfer(
        transaction_id,
        ids=ledger_scope().ids,
        tb_account_id=registered.tb_account_id,
        ledger=registered.ledger,
        amount_minor=250,
    )
    (posted,) = wallet_ledger_backend.create_transfers([earlier])
    assert posted.status == CreateTransferStatus.CREATED

    retry = store.add_credit(key, 250, transaction_id)

    assert retry.replayed is True
    assert retry.balance.fields_minor() == (650, 0, 650)
    assert store.get_transaction(transaction_id).amount_minor == 250
    assert fields(store, key) == (650, 0, 650)


def test_a_retry_with_another_amount_of_a_credit_posted_unlinked_is_a_conflict(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    store.add_credit(key, 400, f"tx-{uuid.uuid4().hex}")
    registered = find_account(key)
    assert registered is not None
    transaction_id = f"tx-{uuid.uuid4().hex}"
    earlier = credit_transfer(
        transaction_id,
        ids=ledger_scope().ids,
        tb_account_id=registered.tb_account_id,
        ledger=registered.ledger,
        amount_minor=250,
    )
    wallet_ledger_backend.create_transfers([earlier])

    with pytest.raises(errors.IdempotencyConflict):
        store.add_credit(key, 251, transaction_id)

    assert fields(store, key) == (650, 0, 650)


def registered_without_reservation(key: WalletKey, backend: LedgerBackend) -> int:
    """A wallet as created before limit reservations: its account and registry row only."""
    ledger = ledger_for_currency(key.currency)
    scope = ledger_scope()
    wallet = wallet_account(key, account_id=scope.ids.account_id(key), ledger=ledger, scope=scope)
    created = backend.create_accounts([system_account(ledger, scope=scope), wallet])
    assert created[1].status == CreateAccountStatus.CREATED
    register_account(key, tb_account_id=wallet.id, ledger=ledger, nonce=0)
    return wallet.id


def test_a_new_wallet_is_registered_with_its_limit_reserved(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    store.add_credit(key, 100, f"tx-{uuid.uuid4().hex}")

    registered = find_account(key)
    assert registered is not None and registered.limit_reserved is True
    assert wallet_ledger_backend.lookup_transfers(
        [ledger_scope().ids.limit_reservation_transfer_id(registered.tb_account_id)]
    )


def test_a_wallet_registered_before_reservations_is_reserved_by_its_first_credit(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    wallet_id = registered_without_reservation(key, wallet_ledger_backend)

    result = store.add_credit(key, BALANCE_MINOR_MAX - 5, f"tx-{uuid.uuid4().hex}")

    assert result.balance.fields_minor() == (BALANCE_MINOR_MAX - 5, 0, BALANCE_MINOR_MAX - 5)
    assert wallet_ledger_backend.lookup_accounts([ledger_scope().ids.limit_account_id(wallet_id)])
    assert wallet_ledger_backend.lookup_transfers(
        [ledger_scope().ids.limit_reservation_transfer_id(wallet_id)]
    )
    registered = find_account(key)
    assert registered is not None and registered.limit_reserved is True
    with pytest.raises(errors.BalanceLimitExceeded):
        store.add_credit(key, 6, f"tx-{uuid.uuid4().hex}")


def test_a_wallet_whose_reservation_another_process_made_still_takes_credits(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    """A process whose cached entry still says "not reserved" reserves again: TigerBeetle
    answers `exists`, and the credit posts."""
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    store.add_credit(key, 100, f"tx-{uuid.uuid4().hex}")
    WalletAccount.objects.filter(client_id=key.client_id).update(limit_reserved=False)
    forget(key)

    result = store.add_credit(key, 50, f"tx-{uuid.uuid4().hex}")

    assert result.balance.fields_minor() == (150, 0, 150)


def test_a_wallet_already_past_the_limit_takes_no_credit_and_stays_unreserved(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    """Credits posted without a guard (an old deployment) that passed the limit: the
    reservation cannot be made, and every credit is refused as past the limit."""
    store = TigerBeetleWalletStore(backend=wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    wallet_id = registered_without_reservation(key, wallet_ledger_backend)
    ledger = ledger_for_currency(key.currency)
    past = credit_transfer(
        f"tx-{uuid.uuid4().hex}",
        ids=ledger_scope().ids,
        tb_account_id=wallet_id,
        ledger=ledger,
        amount_minor=BALANCE_MINOR_MAX + 1,
    )
    assert wallet_ledger_backend.create_transfers([past])[0].status == CreateTransferStatus.CREATED
    refused_id = f"tx-{uuid.uuid4().hex}"

    with pytest.raises(errors.BalanceLimitExceeded):
        store.add_credit(key, 1, refused_id)

    registered = find_account(key)
    assert registered is not None and registered.limit_reserved is False
    assert (
        wallet_ledger_backend.lookup_transfers(
            [
                credit_transfer(
                    refused_id,
                    ids=ledger_scope().ids,
                    tb_account_id=wallet_id,
                    ledger=ledger,
                    amount_minor=1,
                ).id
            ]
        )
        == []
    )
