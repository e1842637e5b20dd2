"""The TigerBeetle store reads a write's balance right behind the write (one request after
the other, with no wait of its own between them). The balance it answers is the one right
after its own transfer, whatever other writes to the wallet land in between, and every
request it sends is answered."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError
from tigerbeetle import CreateTransferResult, CreateTransferStatus, Transfer

from domain import errors
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from ledger.backends import LedgerBackend
from ledger.backends.tigerbeetle_client import TigerBeetleBackend
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import credit_transfer
from registry import transfers as transfer_registry
from registry.accounts import find_account
from tests.conftest import ledger_scope

pytestmark = pytest.mark.django_db


class WritesLandingBehind:
    """The store's backend, with `others` credits of other requests to the same wallet
    landing right after each write the store sends, before the store's balance read: what
    concurrent requests of other processes do."""

    def __init__(self, inner: LedgerBackend, key: WalletKey, others: int) -> None:
        self.inner = inner
        self.key = key
        self.others = others

    def begin_create_transfers(
        self, transfers: list[Transfer]
    ) -> Callable[[], list[CreateTransferResult]]:
        results = self.inner.begin_create_transfers(transfers)()
        registered = find_account(self.key)
        assert registered is not None
        account_id, ledger = registered.tb_account_id, registered.ledger
        landing = [
            credit_transfer(
                f"other-{uuid.uuid4().hex}",
                ids=ledger_scope().ids,
                tb_account_id=account_id,
                ledger=ledger,
                amount_minor=1,
            )
            for _ in range(self.others)
        ]
        if landing:
            answers = self.inner.create_transfers(landing)
            assert all(a.status == CreateTransferStatus.CREATED for a in answers)
        return lambda: results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def new_key() -> WalletKey:
    return WalletKey(f"behind-{uuid.uuid4().hex[:12]}", "USA", "USD")


@pytest.fixture
def funded(wallet_ledger_backend: LedgerBackend) -> WalletKey:
    key = new_key()
    TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope()).add_credit(
        key, 1_000, f"fund-{uuid.uuid4().hex}"
    )
    return key


@pytest.mark.parametrize("others", [2, 40], ids=["within-the-read", "past-the-read"])
def test_a_credit_answers_the_balance_right_after_its_own_transfer(
    wallet_ledger_backend: LedgerBackend, funded: WalletKey, others: int
) -> None:
    store = TigerBeetleWalletStore(
        WritesLandingBehind(wallet_ledger_backend, funded, others), scope=ledger_scope()
    )

    result = store.add_credit(funded, 250, f"tx-{uuid.uuid4().hex}")

    assert result.balance.fields_minor() == (1_250, 0, 1_250)
    assert store.get_balance(funded).fields_minor() == (1_250 + others, 0, 1_250 + others)


@pytest.mark.parametrize("others", [2, 40], ids=["within-the-read", "past-the-read"])
def test_a_debit_answers_the_balance_right_after_its_own_transfer(
    wallet_ledger_backend: LedgerBackend, funded: WalletKey, others: int
) -> None:
    store = TigerBeetleWalletStore(
        WritesLandingBehind(wallet_ledger_backend, funded, others), scope=ledger_scope()
    )

    result = store.subtract_credit(funded, 300, f"ref-{uuid.uuid4().hex}")

    assert result.balance.fields_minor() == (700, 300, 1_000)


@pytest.mark.parametrize("others", [2, 40], ids=["within-the-read", "past-the-read"])
def test_a_void_answers_the_balance_right_after_its_own_transfer(
    wallet_ledger_backend: LedgerBackend, funded: WalletKey, others: int
) -> None:
    reference = f"ref-{uuid.uuid4().hex}"
    TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope()).subtract_credit(
        funded, 300, reference
    )
    store = TigerBeetleWalletStore(
        WritesLandingBehind(wallet_ledger_backend, funded, others), scope=ledger_scope()
    )

    result = store.void_transaction(reference, voided_by="support", reason="refund")

    assert result.balance.fields_minor() == (1_000, 300, 1_300)


def test_every_request_a_refused_write_sends_is_answered(
    wallet_ledger_backend: LedgerBackend, funded: WalletKey
) -> None:
    if not isinstance(wallet_ledger_backend, TigerBeetleBackend):
        pytest.skip("TB_ADDRESSES is not set: the engine answers every request at once")
    store = TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope())
    with pytest.raises(errors.InsufficientFunds):
        store.subtract_credit(funded, 5_000, f"ref-{uuid.uuid4().hex}")
    with pytest.raises(errors.BalanceLimitExceeded):
        store.add_credit(funded, BALANCE_MINOR_MAX, f"tx-{uuid.uuid4().hex}")
    reference = f"ref-{uuid.uuid4().hex}"
    store.subtract_credit(funded, 100, reference)
    store.void_transaction(reference, voided_by="support", reason="refund")

    assert wallet_ledger_backend.requests_in_flight() == 0


def test_a_write_whose_registry_row_fails_leaves_no_request_unanswered(
    wallet_ledger_backend: LedgerBackend, funded: WalletKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(wallet_ledger_backend, TigerBeetleBackend):
        pytest.skip("TB_ADDRESSES is not set: the engine answers every request at once")
    store = TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope())

    def registry_down(**_: Any) -> None:
        raise DatabaseError("the registry's database went away")

    monkeypatch.setattr(transfer_registry, "record_store_write", registry_down)
    with pytest.raises(DatabaseError):
        store.add_credit(funded, 100, f"tx-{uuid.uuid4().hex}")

    assert wallet_ledger_backend.requests_in_flight() == 0
