"""A void TigerBeetle refused burns its transfer id, and the registry counts the attempt so
the next void goes under a new id. When the refusal's answer was lost on the way (the
ledger went away and the request rolled back), the count missed it: the retry meets
`id_already_failed` and must go on under the next id, never answer 500."""

from __future__ import annotations

import uuid

import pytest
from tigerbeetle import CreateTransferStatus

from domain import errors
from domain.ids import WalletKey
from domain.wallets import TransactionState
from ledger.backends import LedgerBackend
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import void_transfer
from registry.models import WalletTransfer
from tests.conftest import ledger_scope

pytestmark = pytest.mark.django_db


def new_key() -> WalletKey:
    return WalletKey(f"void-lost-{uuid.uuid4().hex[:12]}", "USA", "USD")


def refuse_a_void_whose_answer_is_lost(backend: LedgerBackend, transaction_id: str) -> None:
    """What the store sent before the outage: the void under the registry's current attempt
    id, refused by TigerBeetle, with nothing recorded."""
    row = WalletTransfer.objects.select_related("wallet").get(transaction_id=transaction_id)
    void = void_transfer(
        row.tb_transfer_id,
        ids=ledger_scope().ids,
        voided_credit=True,
        tb_account_id=row.wallet.tb_account_id,
        ledger=row.wallet.ledger,
        amount_minor=row.amount_minor,
        attempt=row.void_attempts,
    )
    (answer,) = backend.create_transfers([void])
    assert answer.status == CreateTransferStatus.EXCEEDS_CREDITS


@pytest.fixture
def store(wallet_ledger_backend: LedgerBackend) -> TigerBeetleWalletStore:
    return TigerBeetleWalletStore(wallet_ledger_backend, scope=ledger_scope())


def spent_credit(store: TigerBeetleWalletStore) -> tuple[WalletKey, str]:
    """A wallet whose credit of 1,000 is partly spent: voiding it would overdraw."""
    key, credit_id = new_key(), f"credit-{uuid.uuid4().hex}"
    store.add_credit(key, 1_000, credit_id)
    store.subtract_credit(key, 600, f"ref-{uuid.uuid4().hex}")
    return key, credit_id


def test_a_void_retried_after_a_lost_refusal_goes_through_once_funds_allow(
    store: TigerBeetleWalletStore, wallet_ledger_backend: LedgerBackend
) -> None:
    key, credit_id = spent_credit(store)
    refuse_a_void_whose_answer_is_lost(wallet_ledger_backend, credit_id)
    store.add_credit(key, 600, f"credit-{uuid.uuid4().hex}")

    result = store.void_transaction(credit_id, voided_by="support-1", reason="chargeback")

    assert result.balance.credit_minor == 0  # 1,000 - 600 + 600, less the voided 1,000
    assert store.get_transaction(credit_id).state == TransactionState.VOIDED
    assert WalletTransfer.objects.get(transaction_id=credit_id).void_attempts == 1


def test_a_void_retried_after_a_lost_refusal_is_refused_for_funds_when_still_short(
    store: TigerBeetleWalletStore, wallet_ledger_backend: LedgerBackend
) -> None:
    key, credit_id = spent_credit(store)
    refuse_a_void_whose_answer_is_lost(wallet_ledger_backend, credit_id)

    with pytest.raises(errors.VoidWouldOverdraw):
        store.void_transaction(credit_id, voided_by="support-1", reason="chargeback")

    assert store.get_balance(key).credit_minor == 400
    assert WalletTransfer.objects.get(transaction_id=credit_id).void_attempts == 2
