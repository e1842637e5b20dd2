"""Batches racing on one wallet, on real commits from threads (run on PostgreSQL as CI does:
DATABASE_URL): two batches debiting one wallet at once never overdraw it, on each store;
and on TigerBeetle a batch is one create_transfers request however many items it holds."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from tigerbeetle import CreateTransferResult, Transfer

from domain import errors
from domain.batches import BatchItem, BatchItemKind, BatchOutcome
from domain.ids import WalletKey
from domain.wallets import WalletResult, WalletStore
from ledger.backends import LedgerBackend
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from tests.concurrency import run_concurrently
from tests.conftest import ledger_scope


def new_key() -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD", issuer=None
    )


def debits(key: WalletKey, amount_minor: int, count: int) -> list[BatchItem]:
    return [
        BatchItem(
            kind=BatchItemKind.DEBIT,
            key=key,
            amount_minor=amount_minor,
            transaction_id=f"ref-{uuid.uuid4().hex}",
        )
        for _ in range(count)
    ]


def posted(outcomes: Sequence[BatchOutcome]) -> int:
    return sum(isinstance(outcome, WalletResult) for outcome in outcomes)


def test_two_independent_batches_debiting_one_wallet_never_overdraw_it(
    committed_wallet_store: WalletStore,
) -> None:
    store = committed_wallet_store
    key = new_key()
    store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    batches = [debits(key, 100, 8), debits(key, 100, 8)]

    answers = run_concurrently(lambda items: store.post_batch(items, atomic=False), batches, 2)

    assert posted(answers[0]) + posted(answers[1]) == 10
    refusals = [o for answer in answers for o in answer if isinstance(o, errors.WalletError)]
    assert {refusal.code for refusal in refusals} == {"insufficient_funds"}
    assert store.get_balance(key).fields_minor() == (0, 1_000, 1_000)
    credits_after = [
        o.balance.credit_minor for a in answers for o in a if isinstance(o, WalletResult)
    ]
    assert min(credits_after) >= 0


def test_two_atomic_batches_debiting_one_wallet_post_one_and_refuse_the_other(
    committed_wallet_store: WalletStore,
) -> None:
    store = committed_wallet_store
    key = new_key()
    store.add_credit(key, 1_000, f"tx-{uuid.uuid4().hex}")
    batches = [debits(key, 100, 6), debits(key, 100, 6)]

    def post(items: list[BatchItem]) -> list[BatchOutcome] | errors.WalletError:
        try:
            return store.post_batch(items, atomic=True)
        except errors.InsufficientFunds as refusal:
            return refusal

    answers = run_concurrently(post, batches, 2)

    refused = [answer for answer in answers if isinstance(answer, errors.WalletError)]
    assert len(refused) == 1
    assert store.get_balance(key).fields_minor() == (400, 600, 1_000)


class _CountingBackend:
    """The store's backend, counting the create_transfers requests it is sent (begun or
    called)."""

    def __init__(self, inner: LedgerBackend) -> None:
        self._inner = inner
        self.create_transfers_requests: list[int] = []

    def create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult]:
        self.create_transfers_requests.append(len(transfers))
        return self._inner.create_transfers(transfers)

    def begin_create_transfers(
        self, transfers: list[Transfer]
    ) -> Callable[[], list[CreateTransferResult]]:
        self.create_transfers_requests.append(len(transfers))
        return self._inner.begin_create_transfers(transfers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("atomic", [False, True])
def test_a_batch_is_one_create_transfers_request_on_tigerbeetle(
    db: None, wallet_ledger_backend: LedgerBackend, atomic: bool
) -> None:
    key = new_key()
    setup = TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope())
    setup.add_credit(key, 100_000, f"tx-{uuid.uuid4().hex}")
    counting = _CountingBackend(wallet_ledger_backend)
    store = TigerBeetleWalletStore(
        counting,  # type: ignore[arg-type]  # a spy: the backend's other calls via __getattr__
        scope=ledger_scope(),
    )

    outcomes = store.post_batch(debits(key, 10, 500), atomic=atomic)

    assert posted(outcomes) == 500
    assert counting.create_transfers_requests == [500]


class _StaleFirstLookupBackend:
    """The store's backend, whose first lookup_accounts answers every wallet richer by
    `extra_minor` than it is: a concurrent debit took that much between the batch's look at
    its wallets and its chain."""

    def __init__(self, inner: LedgerBackend, *, extra_minor: int) -> None:
        self._inner = inner
        self._extra_minor = extra_minor
        self._looked = False

    def lookup_accounts(self, account_ids: list[int]) -> list[Any]:
        found = self._inner.lookup_accounts(account_ids)
        if not self._looked:
            self._looked = True
            for account in found:
                account.credits_posted += self._extra_minor
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_an_atomic_batch_its_chain_refuses_after_a_racing_debit_leaves_no_new_wallet(
    db: None, wallet_ledger_backend: LedgerBackend
) -> None:
    drained, fresh = new_key(), new_key()
    setup = TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope())
    setup.add_credit(drained, 1_000, f"tx-{uuid.uuid4().hex}")
    stale = _StaleFirstLookupBackend(wallet_ledger_backend, extra_minor=5_000)
    store = TigerBeetleWalletStore(
        stale,  # type: ignore[arg-type]  # a stand-in: the backend's other calls via __getattr__
        scope=ledger_scope(),
    )
    items = [
        BatchItem(
            kind=BatchItemKind.CREDIT,
            key=fresh,
            amount_minor=300,
            transaction_id=f"tx-{uuid.uuid4().hex}",
        ),
        *debits(drained, 2_000, 1),
    ]

    with pytest.raises(errors.InsufficientFunds) as refusal:
        store.post_batch(items, atomic=True)

    assert refusal.value.details["item"] == 1
    with pytest.raises(errors.WalletNotFound):
        setup.get_balance(fresh)
    assert setup.get_balance(drained).fields_minor() == (1_000, 0, 1_000)
    setup.add_credit(fresh, 200, f"tx-{uuid.uuid4().hex}")
    assert setup.get_balance(fresh).fields_minor() == (200, 0, 200)
