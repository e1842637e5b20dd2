"""Pending transfers, post/void, expiry, balancing and closing transfers, imported transfers,
per TigerBeetle's reference, on every backend."""

from __future__ import annotations

import time
from typing import Any

import pytest
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
    pair_transfer,
    post,
    transfer,
    transfer_status,
)

S = tb.CreateTransferStatus
AMOUNT_MAX = 2**128 - 1


@pytest.fixture
def pending(ledger_backend: LedgerBackend) -> tb.Transfer:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    return post(ledger_backend, transfer(debit, credit=credit, amount=100, flags=TF.PENDING))


def settle(
    pending: tb.Transfer, flags: tb.TransferFlags, amount: int = 0, **fields: Any
) -> tb.Transfer:
    return tb.Transfer(id=tb.id(), pending_id=pending.id, amount=amount, flags=flags, **fields)


def test_a_pending_transfer_reserves_the_amount(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    debit = tb.Account(id=pending.debit_account_id)

    assert balance_of(ledger_backend, debit) == (100, 0, 0, 0)


def test_posting_the_full_amount_moves_it_from_pending_to_posted(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    post(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX))

    assert balance_of(ledger_backend, tb.Account(id=pending.debit_account_id)) == (0, 100, 0, 0)
    assert balance_of(ledger_backend, tb.Account(id=pending.credit_account_id)) == (0, 0, 0, 100)


def test_a_partial_post_posts_the_amount_and_releases_the_rest(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    post(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, 30))

    assert balance_of(ledger_backend, tb.Account(id=pending.debit_account_id)) == (0, 30, 0, 0)


def test_voiding_releases_the_whole_pending_amount(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    post(ledger_backend, settle(pending, TF.VOID_PENDING_TRANSFER))

    assert balance_of(ledger_backend, tb.Account(id=pending.debit_account_id)) == (0, 0, 0, 0)


def test_a_post_inherits_accounts_ledger_and_code_from_the_pending_transfer(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    posted = post(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX))

    (stored,) = ledger_backend.lookup_transfers([posted.id])
    assert (stored.debit_account_id, stored.credit_account_id, stored.amount) == (
        pending.debit_account_id,
        pending.credit_account_id,
        100,
    )
    assert (stored.ledger, stored.code) == (pending.ledger, pending.code)


def test_a_pending_transfer_resolves_at_most_once(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    post(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX))

    again_post = settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX)
    again_void = settle(pending, TF.VOID_PENDING_TRANSFER)

    assert transfer_status(ledger_backend, again_post) == S.PENDING_TRANSFER_ALREADY_POSTED
    assert transfer_status(ledger_backend, again_void) == S.PENDING_TRANSFER_ALREADY_POSTED


def test_a_voided_pending_transfer_cannot_be_posted(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    post(ledger_backend, settle(pending, TF.VOID_PENDING_TRANSFER))

    late_post = settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX)

    assert transfer_status(ledger_backend, late_post) == S.PENDING_TRANSFER_ALREADY_VOIDED


def test_posting_more_than_pending_is_refused(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    too_much = settle(pending, TF.POST_PENDING_TRANSFER, 101)

    assert transfer_status(ledger_backend, too_much) == S.EXCEEDS_PENDING_TRANSFER_AMOUNT


def test_voiding_with_a_partial_amount_is_refused(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    partial_void = settle(pending, TF.VOID_PENDING_TRANSFER, 40)

    assert transfer_status(ledger_backend, partial_void) == S.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("debit_account_id", S.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID),
        ("credit_account_id", S.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID),
        ("ledger", S.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER),
        ("code", S.PENDING_TRANSFER_HAS_DIFFERENT_CODE),
    ],
)
def test_a_post_naming_another_field_value_than_the_pending_transfer_is_refused(
    ledger_backend: LedgerBackend, pending: tb.Transfer, field: str, expected: S
) -> None:
    mismatched = settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX, **{field: 9})

    assert transfer_status(ledger_backend, mismatched) == expected


def test_posting_an_unknown_pending_transfer_is_not_found(ledger_backend: LedgerBackend) -> None:
    unknown = tb.Transfer(id=tb.id(), pending_id=tb.id(), flags=TF.POST_PENDING_TRANSFER)

    assert transfer_status(ledger_backend, unknown) == S.PENDING_TRANSFER_NOT_FOUND


def test_posting_a_single_phase_transfer_is_refused(ledger_backend: LedgerBackend) -> None:
    single = post(ledger_backend, pair_transfer(new_accounts(ledger_backend, AF.NONE, AF.NONE)))

    refused = settle(single, TF.POST_PENDING_TRANSFER, AMOUNT_MAX)

    assert transfer_status(ledger_backend, refused) == S.PENDING_TRANSFER_NOT_PENDING


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"pending_id": 0}, S.PENDING_ID_MUST_NOT_BE_ZERO),
        ({"pending_id": AMOUNT_MAX}, S.PENDING_ID_MUST_NOT_BE_INT_MAX),
        ({"timeout": 1}, S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
        ({"flags": TF.POST_PENDING_TRANSFER | TF.BALANCING_DEBIT}, S.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
        (
            {"flags": TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER},
            S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        ),
    ],
    ids=["pending_id_zero", "pending_id_max", "timeout", "post_balancing", "post_void"],
)
def test_a_malformed_post_is_refused_with_its_result_code(
    ledger_backend: LedgerBackend, pending: tb.Transfer, fields: dict, expected: S
) -> None:
    event = settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX)
    malformed = tb.Transfer(
        **{**{n: getattr(event, n) for n in tb.Transfer.__dataclass_fields__}, **fields}
    )

    assert transfer_status(ledger_backend, malformed) == expected


def test_a_post_cannot_name_itself_as_its_pending_transfer(ledger_backend: LedgerBackend) -> None:
    same = tb.id()
    event = tb.Transfer(id=same, pending_id=same, flags=TF.POST_PENDING_TRANSFER)

    assert transfer_status(ledger_backend, event) == S.PENDING_ID_MUST_BE_DIFFERENT


def test_retrying_a_full_post_answers_exists(
    ledger_backend: LedgerBackend, pending: tb.Transfer
) -> None:
    full_post = post(ledger_backend, settle(pending, TF.POST_PENDING_TRANSFER, AMOUNT_MAX))

    assert transfer_status(ledger_backend, full_post) == S.EXISTS


def test_a_pending_transfer_expires_after_its_timeout(ledger_backend: LedgerBackend) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    expiring = post(
        ledger_backend, transfer(debit, credit=credit, amount=100, flags=TF.PENDING, timeout=1)
    )
    time.sleep(1.2)

    late = settle(expiring, TF.POST_PENDING_TRANSFER, AMOUNT_MAX)

    assert transfer_status(ledger_backend, late) == S.PENDING_TRANSFER_EXPIRED
    assert balance_of(ledger_backend, debit) == (0, 0, 0, 0)


def test_an_expiry_adds_no_row_to_the_account_history_the_next_transfers_row_shows_it(
    ledger_backend: LedgerBackend,
) -> None:
    """What the balance history's expiry points are computed from (ledger/hold_history.py):
    TigerBeetle 0.17.9 records a balance row per transfer, none at a pending's expiry."""
    debit, credit = new_accounts(ledger_backend, AF.HISTORY, AF.NONE)
    funded = post(ledger_backend, transfer(credit, credit=debit, amount=500))
    expiring = post(
        ledger_backend, transfer(debit, credit=credit, amount=100, flags=TF.PENDING, timeout=1)
    )
    time.sleep(1.2)
    later = post(ledger_backend, transfer(credit, credit=debit, amount=5))

    rows = ledger_backend.get_account_balances(account_filter(debit))

    (funded_at, expiring_at, later_at) = (
        stored.timestamp
        for stored in ledger_backend.lookup_transfers([funded.id, expiring.id, later.id])
    )
    assert [(row.timestamp, row.debits_pending, row.credits_posted) for row in rows] == [
        (funded_at, 0, 500),
        (expiring_at, 100, 500),
        (later_at, 0, 505),
    ]


def test_balancing_debit_transfers_at_most_what_the_debit_account_holds(
    ledger_backend: LedgerBackend,
) -> None:
    funding, wallet, sink = new_accounts(
        ledger_backend, AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS, AF.NONE
    )
    post(ledger_backend, transfer(funding, credit=wallet, amount=70))

    sweep = post(
        ledger_backend, transfer(wallet, credit=sink, amount=1_000, flags=TF.BALANCING_DEBIT)
    )

    assert ledger_backend.lookup_transfers([sweep.id])[0].amount == 70
    assert balance_of(ledger_backend, wallet) == (0, 70, 0, 70)


def test_balancing_credit_transfers_at_most_what_the_credit_account_owes(
    ledger_backend: LedgerBackend,
) -> None:
    a, bounded, c = new_accounts(
        ledger_backend, AF.NONE, AF.CREDITS_MUST_NOT_EXCEED_DEBITS, AF.NONE
    )
    post(ledger_backend, transfer(bounded, credit=c, amount=40))

    repay = post(
        ledger_backend, transfer(a, credit=bounded, amount=1_000, flags=TF.BALANCING_CREDIT)
    )

    assert ledger_backend.lookup_transfers([repay.id])[0].amount == 40


def test_a_closing_transfer_closes_the_account_and_voiding_it_reopens(
    ledger_backend: LedgerBackend,
) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    closing = post(
        ledger_backend,
        transfer(debit, credit=credit, amount=0, flags=TF.PENDING | TF.CLOSING_DEBIT),
    )

    while_closed = transfer_status(ledger_backend, transfer(debit, credit=credit))
    post(ledger_backend, settle(closing, TF.VOID_PENDING_TRANSFER))
    after_reopen = transfer_status(ledger_backend, transfer(debit, credit=credit))

    assert while_closed == S.DEBIT_ACCOUNT_ALREADY_CLOSED
    assert after_reopen == S.CREATED


def test_a_closed_credit_account_refuses_credits(ledger_backend: LedgerBackend) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    post(
        ledger_backend,
        transfer(debit, credit=credit, amount=0, flags=TF.PENDING | TF.CLOSING_CREDIT),
    )

    assert transfer_status(ledger_backend, transfer(debit, credit=credit)) == (
        S.CREDIT_ACCOUNT_ALREADY_CLOSED
    )


def test_imported_transfers_keep_their_past_timestamps(ledger_backend: LedgerBackend) -> None:
    base = _latest_timestamp(ledger_backend)
    debit, credit = create_accounts(
        ledger_backend,
        account(flags=AF.IMPORTED, timestamp=base + 1),
        account(flags=AF.IMPORTED, timestamp=base + 2),
    )
    imported = transfer(debit, credit=credit, amount=5, flags=TF.IMPORTED, timestamp=base + 3)

    assert transfer_status(ledger_backend, imported) == S.CREATED
    assert ledger_backend.lookup_transfers([imported.id])[0].timestamp == base + 3


def test_an_imported_transfer_must_postdate_its_accounts(ledger_backend: LedgerBackend) -> None:
    base = _latest_timestamp(ledger_backend)
    debit, credit = create_accounts(
        ledger_backend,
        account(flags=AF.IMPORTED, timestamp=base + 10),
        account(flags=AF.IMPORTED, timestamp=base + 20),
    )

    between = transfer(debit, credit=credit, amount=5, flags=TF.IMPORTED, timestamp=base + 15)

    assert transfer_status(ledger_backend, between) == (
        S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
    )


def test_an_imported_transfer_cannot_share_an_accounts_timestamp(
    ledger_backend: LedgerBackend,
) -> None:
    base = _latest_timestamp(ledger_backend)
    debit, credit = create_accounts(
        ledger_backend,
        account(flags=AF.IMPORTED, timestamp=base + 1),
        account(flags=AF.IMPORTED, timestamp=base + 2),
    )

    same_as_account = transfer(
        debit, credit=credit, amount=5, flags=TF.IMPORTED, timestamp=base + 2
    )

    assert transfer_status(ledger_backend, same_as_account) == (
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
    )


def test_an_imported_pending_transfer_cannot_have_a_timeout(
    ledger_backend: LedgerBackend,
) -> None:
    base = _latest_timestamp(ledger_backend)
    debit, credit = create_accounts(
        ledger_backend,
        account(flags=AF.IMPORTED, timestamp=base + 1),
        account(flags=AF.IMPORTED, timestamp=base + 2),
    )

    with_timeout = transfer(
        debit,
        credit=credit,
        amount=5,
        flags=TF.IMPORTED | TF.PENDING,
        timestamp=base + 3,
        timeout=10,
    )

    assert transfer_status(ledger_backend, with_timeout) == S.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO


def test_imported_transfer_timestamps_are_range_checked(ledger_backend: LedgerBackend) -> None:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)

    zero = transfer(debit, credit=credit, flags=TF.IMPORTED, timestamp=0)
    future = transfer(debit, credit=credit, flags=TF.IMPORTED, timestamp=2**62)

    assert transfer_status(ledger_backend, zero) == S.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE
    assert transfer_status(ledger_backend, future) == S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE


def test_a_batch_cannot_mix_imported_and_ordinary_transfers(
    ledger_backend: LedgerBackend,
) -> None:
    base = _latest_timestamp(ledger_backend)
    debit, credit = create_accounts(
        ledger_backend,
        account(flags=AF.IMPORTED, timestamp=base + 1),
        account(flags=AF.IMPORTED, timestamp=base + 2),
    )

    imported_first = ledger_backend.create_transfers(
        [
            transfer(debit, credit=credit, flags=TF.IMPORTED, timestamp=base + 3),
            transfer(debit, credit=credit),
        ]
    )
    ordinary_first = ledger_backend.create_transfers(
        [
            transfer(debit, credit=credit),
            transfer(debit, credit=credit, flags=TF.IMPORTED, timestamp=base + 4),
        ]
    )

    assert imported_first[1].status == S.IMPORTED_EVENT_EXPECTED
    assert ordinary_first[1].status == S.IMPORTED_EVENT_NOT_EXPECTED


def _latest_timestamp(backend: LedgerBackend) -> int:
    """A timestamp at least as late as anything on the ledger (ours is the newest object)."""
    (result,) = backend.create_accounts([account()])
    return result.timestamp
