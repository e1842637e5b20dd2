"""The engine asserts TigerBeetle's balance limits after applying a batch.

The transfer checks keep these invariants; the assertion proves it after every batch, so a
bug in the engine (or a row changed behind its back) stops the batch instead of being
written.
"""

from __future__ import annotations

import pytest

from domain.ids import u128_to_hex
from ledger.engine import state_machine as sm
from ledger.engine.backend import EngineBackend
from ledger.engine.models import LedgerAccount, LedgerTransfer
from tests.ledger.builders import AF, new_accounts, post, transfer


def account_state(flags: int, **balances: int) -> sm.AccountState:
    fields = {"debits_pending": 0, "debits_posted": 0, "credits_pending": 0, "credits_posted": 0}
    return sm.AccountState(
        id=1,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        ledger=700,
        code=10,
        flags=flags,
        timestamp=1,
        **{**fields, **balances},
    )


def test_balance_limits_hold_when_debits_equal_posted_credits() -> None:
    sm.assert_balance_limits(
        [
            account_state(
                AF.DEBITS_MUST_NOT_EXCEED_CREDITS,
                debits_pending=4,
                debits_posted=6,
                credits_posted=10,
            ),
            account_state(
                AF.CREDITS_MUST_NOT_EXCEED_DEBITS,
                credits_pending=4,
                credits_posted=6,
                debits_posted=10,
            ),
            account_state(AF.NONE, debits_posted=99),
        ]
    )


def test_pending_debits_past_posted_credits_break_the_debit_limit() -> None:
    corrupted = account_state(
        AF.DEBITS_MUST_NOT_EXCEED_CREDITS, debits_pending=1, debits_posted=10, credits_posted=10
    )

    with pytest.raises(AssertionError, match="debits exceed credits"):
        sm.assert_balance_limits([corrupted])


def test_credits_past_posted_debits_break_the_credit_limit() -> None:
    corrupted = account_state(
        AF.CREDITS_MUST_NOT_EXCEED_DEBITS, credits_posted=11, debits_posted=10
    )

    with pytest.raises(AssertionError, match="credits exceed debits"):
        sm.assert_balance_limits([corrupted])


@pytest.mark.django_db
def test_engine_refuses_to_persist_a_batch_that_leaves_an_account_overdrawn() -> None:
    engine = EngineBackend()
    system, wallet = new_accounts(engine, AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    post(engine, transfer(system, credit=wallet, amount=100))
    post(engine, transfer(wallet, credit=system, amount=50))
    # A row changed behind the engine's back: posted credits now below the debits.
    LedgerAccount.objects.filter(id=u128_to_hex(wallet.id)).update(credits_posted=u128_to_hex(10))
    top_up = transfer(system, credit=wallet, amount=1)

    with pytest.raises(AssertionError, match="debits exceed credits"):
        engine.create_transfers([top_up])

    assert not LedgerTransfer.objects.filter(id=u128_to_hex(top_up.id)).exists()
