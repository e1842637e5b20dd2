"""Answers the embedded engine once gave differently from the real server (found by
tests/ledger/test_differential.py), one behaviour each, on every backend."""

from __future__ import annotations

import time
from dataclasses import replace

import tigerbeetle as tb

from ledger.backends.base import LedgerBackend
from tests.ledger.builders import (
    AF,
    TF,
    account,
    account_filter,
    balance_of,
    create_accounts,
    new_accounts,
    post,
    transfer,
    transfer_status,
)

S = tb.CreateTransferStatus
A = tb.CreateAccountStatus
AMOUNT_MAX = 2**128 - 1
TIMESTAMP_LIMIT = 2**63
EXPIRY_WAIT_S = 1.5  # past a 1 s timeout and the server's next expiry pulse


def settle(pending: tb.Transfer, flags: tb.TransferFlags, amount: int = 0) -> tb.Transfer:
    return tb.Transfer(id=tb.id(), pending_id=pending.id, amount=amount, flags=flags)


def test_a_refused_event_answers_its_own_timestamp_in_the_batch(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)

    results = ledger_backend.create_transfers(
        [
            transfer(debit, credit=credit, ledger=0),
            transfer(debit, credit=credit),
            transfer(debit, credit=debit),
        ]
    )

    assert [r.status for r in results] == [
        S.LEDGER_MUST_NOT_BE_ZERO,
        S.CREATED,
        S.ACCOUNTS_MUST_BE_DIFFERENT,
    ]
    assert [r.timestamp - results[1].timestamp for r in results] == [-1, 0, 1]


def test_stored_accounts_and_transfers_keep_the_linked_flag(ledger_backend: LedgerBackend) -> None:
    first, second = account(flags=AF.LINKED), account()
    create_accounts(ledger_backend, first, second)
    linked = transfer(first, credit=second, flags=TF.LINKED)
    ledger_backend.create_transfers([linked, transfer(first, credit=second)])

    (stored_account,) = ledger_backend.lookup_accounts([first.id])
    (stored_transfer,) = ledger_backend.lookup_transfers([linked.id])

    assert stored_account.flags == AF.LINKED
    assert stored_transfer.flags == TF.LINKED


def test_resubmitting_a_linked_event_unlinked_is_a_different_flags_event(
    ledger_backend: LedgerBackend,
) -> None:
    first, second = account(flags=AF.LINKED), account()
    create_accounts(ledger_backend, first, second)

    (result,) = ledger_backend.create_accounts([account(id=first.id)])

    assert result.status == A.EXISTS_WITH_DIFFERENT_FLAGS


def test_a_closed_account_resubmitted_as_created_has_different_flags(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    post(
        ledger_backend,
        transfer(debit, credit=credit, amount=0, flags=TF.PENDING | TF.CLOSING_DEBIT),
    )

    (result,) = ledger_backend.create_accounts([debit])

    assert result.status == A.EXISTS_WITH_DIFFERENT_FLAGS


def test_in_a_chain_left_open_the_first_failing_event_carries_its_code(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)

    results = ledger_backend.create_transfers(
        [
            transfer(debit, credit=credit, flags=TF.LINKED),
            transfer(debit, credit=credit, code=0, flags=TF.LINKED),
            transfer(debit, credit=credit, flags=TF.LINKED),
        ]
    )

    assert [r.status for r in results] == [
        S.LINKED_EVENT_FAILED,
        S.CODE_MUST_NOT_BE_ZERO,
        S.LINKED_EVENT_CHAIN_OPEN,
    ]


def test_a_pending_transfer_on_a_closed_account_can_still_be_voided(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit, other = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    pending = post(ledger_backend, transfer(debit, credit=credit, amount=10, flags=TF.PENDING))
    post(
        ledger_backend, transfer(debit, credit=other, amount=0, flags=TF.PENDING | TF.CLOSING_DEBIT)
    )

    voided = transfer_status(ledger_backend, settle(pending, TF.VOID_PENDING_TRANSFER))

    assert voided == S.CREATED
    assert balance_of(ledger_backend, debit) == (0, 0, 0, 0)


def test_posting_on_a_closed_account_is_refused(ledger_backend: LedgerBackend) -> None:
    debit, credit, other = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    pending = post(ledger_backend, transfer(debit, credit=credit, amount=10, flags=TF.PENDING))
    post(
        ledger_backend, transfer(debit, credit=other, amount=0, flags=TF.PENDING | TF.CLOSING_DEBIT)
    )

    status = transfer_status(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, 10))

    assert status == S.DEBIT_ACCOUNT_ALREADY_CLOSED


def test_voiding_more_than_the_pending_amount_exceeds_it(ledger_backend: LedgerBackend) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    pending = post(ledger_backend, transfer(debit, credit=credit, amount=10, flags=TF.PENDING))

    status = transfer_status(ledger_backend, settle(pending, TF.VOID_PENDING_TRANSFER, 11))

    assert status == S.EXCEEDS_PENDING_TRANSFER_AMOUNT


def test_a_pending_transfer_overflowing_posted_debits_says_so_first(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit, other = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(debit, credit=other, amount=AMOUNT_MAX - 5))

    status = transfer_status(
        ledger_backend, transfer(debit, credit=credit, amount=10, flags=TF.PENDING)
    )

    assert status == S.OVERFLOWS_DEBITS_POSTED


def test_retrying_a_post_with_another_amount_is_a_different_amount(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    pending = post(ledger_backend, transfer(debit, credit=credit, amount=10, flags=TF.PENDING))
    full = post(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, 10))

    retry = replace(full, amount=12)

    assert transfer_status(ledger_backend, retry) == S.EXISTS_WITH_DIFFERENT_AMOUNT


def test_retrying_a_post_without_user_data_compares_the_pending_transfers(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    pending = post(ledger_backend, transfer(debit, credit=credit, amount=10, flags=TF.PENDING))
    with_user_data = replace(settle(pending, TF.POST_PENDING_TRANSFER, 10), user_data_64=7)
    post(ledger_backend, with_user_data)

    retry = replace(with_user_data, user_data_64=0)

    assert transfer_status(ledger_backend, retry) == S.EXISTS_WITH_DIFFERENT_USER_DATA_64


def test_a_filter_bound_past_the_timestamp_range_answers_nothing(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.HISTORY, AF.NONE)
    post(ledger_backend, transfer(debit, credit=credit))
    past_the_range = account_filter(debit, timestamp_max=TIMESTAMP_LIMIT)

    assert ledger_backend.get_account_transfers(past_the_range) == []
    assert ledger_backend.get_account_balances(past_the_range) == []


def test_reads_show_a_timed_out_pending_transfer_released_before_any_write(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    post(
        ledger_backend,
        transfer(debit, credit=credit, amount=10, flags=TF.PENDING | TF.CLOSING_CREDIT, timeout=1),
    )
    time.sleep(EXPIRY_WAIT_S)

    (reopened,) = ledger_backend.lookup_accounts([credit.id])

    assert balance_of(ledger_backend, debit) == (0, 0, 0, 0)
    assert balance_of(ledger_backend, credit) == (0, 0, 0, 0)
    assert reopened.flags == AF.NONE
