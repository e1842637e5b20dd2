"""The migration jobs' batch port (ledger/batches.py): what it answers, and its one error
contract (LedgerUnavailable when the ledger does not answer, nothing of its own besides)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tigerbeetle import Account, CreateAccountStatus, CreateTransferStatus, QueryFilter

from domain.ids import WalletKey
from domain.money import ledger_for_currency
from ledger.backends import LedgerBackend, LedgerUnavailable
from ledger.batches import LedgerBatches
from ledger.tb_model import AccountCodes, LedgerScope, credit_transfer, history_filter
from registry.accounts import find_account
from tests.conftest import ledger_scope
from tests.ledger.builders import UnreachableLedger

pytestmark = pytest.mark.django_db


def new_key() -> WalletKey:
    return WalletKey(client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD")


class Recording:
    """A backend that records each query_accounts filter, then answers as the wrapped one."""

    def __init__(self, inner: LedgerBackend) -> None:
        self.inner = inner
        self.queries: list[QueryFilter] = []

    def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        self.queries.append(query_filter)
        return self.inner.query_accounts(query_filter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_batch_is_written_and_looked_up_with_one_result_per_event(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    batches = LedgerBatches(wallet_ledger_backend, scope=ledger_scope())
    key = new_key()
    account_id = batches.wallet_accounts.ensure_wallet_account(key, reserve_limit=False)
    ledger = ledger_for_currency(key.currency)
    transfers = [
        credit_transfer(
            f"tx-{uuid.uuid4().hex}",
            ids=ledger_scope().ids,
            tb_account_id=account_id,
            ledger=ledger,
            amount_minor=n,
        )
        for n in (1, 2)
    ]

    results = batches.create_transfers(transfers)
    again = batches.create_transfers(transfers)

    assert [r.status for r in results] == [CreateTransferStatus.CREATED] * 2
    assert [r.status for r in again] == [CreateTransferStatus.EXISTS] * 2
    found = batches.lookup_transfers(
        [t.id for t in transfers] + [ledger_scope().ids.transaction_transfer_id("no")]
    )
    assert sorted(t.amount for t in found) == [1, 2]
    (account,) = batches.lookup_accounts([account_id, 12345])
    assert account.credits_posted == 3
    assert batches.latest_timestamp() >= max(r.timestamp for r in results)
    assert len(batches.get_account_transfers(history_filter(account_id, limit=10))) == 2
    assert len(batches.get_account_balances(history_filter(account_id, limit=10))) == 2


def test_an_account_batch_answers_each_account_in_order(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    batches = LedgerBatches(wallet_ledger_backend, scope=ledger_scope())
    ledger = ledger_for_currency("USD")
    fresh = Account(id=int(uuid.uuid4().int >> 1), ledger=ledger, code=ledger_scope().codes.system)
    existing = Account(
        id=ledger_scope().ids.system_account_id(ledger),
        ledger=ledger,
        code=ledger_scope().codes.system,
    )
    batches.create_accounts([existing])

    results = batches.create_accounts([fresh, existing])

    assert [r.status for r in results] == [CreateAccountStatus.CREATED, CreateAccountStatus.EXISTS]


def test_the_wallet_accounts_page_asks_for_this_applications_wallet_code_from_settings(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    recording = Recording(wallet_ledger_backend)
    key = new_key()
    LedgerBatches(recording, scope=ledger_scope()).wallet_accounts.ensure_wallet_account(key)
    registered = find_account(key)
    assert registered is not None

    page = LedgerBatches(recording, scope=ledger_scope()).wallet_accounts_page(
        timestamp_min=0, limit=8189
    )

    assert registered.tb_account_id in {account.id for account in page}
    assert {account.code for account in page} == {ledger_scope().codes.wallet}
    assert [(q.code, q.limit, q.timestamp_min) for q in recording.queries] == [
        (ledger_scope().codes.wallet, 8189, 0)
    ]


def test_the_scope_given_to_the_constructor_chooses_the_wallet_accounts_page(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    recording = Recording(wallet_ledger_backend)
    codes = AccountCodes(wallet=0xFFFE, system=0xFFFD, limit=0xFFFC)
    scope = LedgerScope(ids=ledger_scope().ids, codes=codes)

    LedgerBatches(recording, scope=scope).wallet_accounts_page(timestamp_min=5, limit=3)

    assert [(q.code, q.limit, q.timestamp_min) for q in recording.queries] == [(0xFFFE, 3, 5)]


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.create_transfers(
            [
                credit_transfer(
                    "tx", ids=ledger_scope().ids, tb_account_id=1, ledger=840, amount_minor=1
                )
            ]
        ),
        lambda b: b.create_accounts([Account(id=1, ledger=840, code=1)]),
        lambda b: b.lookup_accounts([1]),
        lambda b: b.lookup_transfers([1]),
        lambda b: b.get_account_transfers(history_filter(1, limit=1)),
        lambda b: b.get_account_balances(history_filter(1, limit=1)),
        lambda b: b.wallet_accounts_page(timestamp_min=0, limit=1),
        lambda b: b.latest_timestamp(),
        lambda b: b.wallet_accounts.ensure_wallet_account(new_key(), reserve_limit=False),
    ],
    ids=[
        "create_transfers",
        "create_accounts",
        "lookup_accounts",
        "lookup_transfers",
        "get_account_transfers",
        "get_account_balances",
        "wallet_accounts_page",
        "latest_timestamp",
        "wallet_accounts",
    ],
)
def test_a_ledger_that_does_not_answer_is_ledger_unavailable_from_every_method(
    call: Any,
) -> None:
    with pytest.raises(LedgerUnavailable):
        call(LedgerBatches(UnreachableLedger(), scope=ledger_scope()))


def test_only_a_backend_callable_from_any_thread_lets_a_job_use_a_thread_of_its_own() -> None:
    class AnyThread:
        callable_from_any_thread = True

    class CallersThreadOnly:
        pass

    any_thread = LedgerBatches(
        AnyThread(),  # type: ignore[arg-type]  # a stand-in with a backend's thread flag only
        scope=ledger_scope(),
    )
    callers_thread = LedgerBatches(
        CallersThreadOnly(),  # type: ignore[arg-type]  # a stand-in with no backend calls
        scope=ledger_scope(),
    )

    assert any_thread.callable_from_any_thread is True
    assert callers_thread.callable_from_any_thread is False
