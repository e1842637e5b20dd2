"""create_transfers for single-phase transfers, per TigerBeetle's reference
(requests/create_transfers.md), on every backend."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import tigerbeetle as tb

from ledger.backends.base import LedgerBackend
from tests.ledger.builders import (
    AF,
    LEDGER,
    TF,
    account,
    balance_of,
    create_accounts,
    new_accounts,
    pair_transfer,
    post,
    transfer,
    transfer_status,
)

S = tb.CreateTransferStatus
U128_MAX = 2**128 - 1


@pytest.fixture
def pair(ledger_backend: LedgerBackend) -> tuple[tb.Account, tb.Account]:
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    return debit, credit


def test_a_transfer_moves_the_amount_between_its_accounts(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    debit, credit = pair

    post(ledger_backend, transfer(debit, credit=credit, amount=250))

    assert balance_of(ledger_backend, debit) == (0, 250, 0, 0)
    assert balance_of(ledger_backend, credit) == (0, 0, 0, 250)


def test_a_zero_amount_transfer_is_allowed(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    assert transfer_status(ledger_backend, pair_transfer(pair, amount=0)) == S.CREATED


def test_posting_the_same_transfer_again_answers_exists_and_moves_nothing(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    event = post(ledger_backend, pair_transfer(pair, amount=40))

    (result,) = ledger_backend.create_transfers([event])

    assert result.status == S.EXISTS
    assert balance_of(ledger_backend, pair[0]) == (0, 40, 0, 0)


def test_exists_answers_the_original_transfers_timestamp(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    event = pair_transfer(pair)
    (first,) = ledger_backend.create_transfers([event])

    (again,) = ledger_backend.create_transfers([event])

    assert again.timestamp == first.timestamp


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"flags": TF.PENDING}, S.EXISTS_WITH_DIFFERENT_FLAGS),
        ({"amount": 11}, S.EXISTS_WITH_DIFFERENT_AMOUNT),
        ({"user_data_128": 1}, S.EXISTS_WITH_DIFFERENT_USER_DATA_128),
        ({"user_data_64": 1}, S.EXISTS_WITH_DIFFERENT_USER_DATA_64),
        ({"user_data_32": 1}, S.EXISTS_WITH_DIFFERENT_USER_DATA_32),
        ({"code": 11}, S.EXISTS_WITH_DIFFERENT_CODE),
        ({"ledger": 701}, S.EXISTS_WITH_DIFFERENT_LEDGER),
    ],
    ids=lambda value: value.name.lower() if isinstance(value, S) else "",
)
def test_the_same_id_with_a_different_field_answers_exists_with_different_that_field(
    ledger_backend: LedgerBackend,
    pair: tuple[tb.Account, tb.Account],
    change: dict[str, Any],
    expected: S,
) -> None:
    event = post(ledger_backend, pair_transfer(pair))

    assert transfer_status(ledger_backend, _with(event, **change)) == expected


def test_the_same_id_with_other_accounts_answers_exists_with_different_account_ids(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    (other,) = new_accounts(ledger_backend, AF.NONE)
    event = post(ledger_backend, pair_transfer(pair))

    debit_changed = transfer_status(ledger_backend, _with(event, debit_account_id=other.id))
    credit_changed = transfer_status(ledger_backend, _with(event, credit_account_id=other.id))

    assert debit_changed == S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    assert credit_changed == S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": 0}, S.ID_MUST_NOT_BE_ZERO),
        ({"id": U128_MAX}, S.ID_MUST_NOT_BE_INT_MAX),
        ({"timestamp": 1}, S.TIMESTAMP_MUST_BE_ZERO),
        ({"flags": TF(1 << 12)}, S.RESERVED_FLAG),
        ({"flags": TF.PENDING | TF.POST_PENDING_TRANSFER}, S.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
        ({"debit_account_id": 0}, S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
        ({"debit_account_id": U128_MAX}, S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX),
        ({"credit_account_id": 0}, S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
        ({"credit_account_id": U128_MAX}, S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX),
        ({"pending_id": 5}, S.PENDING_ID_MUST_BE_ZERO),
        ({"timeout": 5}, S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
        ({"flags": TF.CLOSING_DEBIT}, S.CLOSING_TRANSFER_MUST_BE_PENDING),
        ({"ledger": 0}, S.LEDGER_MUST_NOT_BE_ZERO),
        ({"code": 0}, S.CODE_MUST_NOT_BE_ZERO),
        ({"ledger": 701}, S.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS),
    ],
    ids=lambda value: value.name.lower() if isinstance(value, S) else "",
)
def test_an_invalid_transfer_is_refused_with_its_result_code(
    ledger_backend: LedgerBackend,
    pair: tuple[tb.Account, tb.Account],
    change: dict[str, Any],
    expected: S,
) -> None:
    assert transfer_status(ledger_backend, _with(pair_transfer(pair), **change)) == expected
    assert balance_of(ledger_backend, pair[0]) == (0, 0, 0, 0)


def test_an_account_cannot_transfer_to_itself(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    assert transfer_status(ledger_backend, transfer(pair[0], credit=pair[0])) == (
        S.ACCOUNTS_MUST_BE_DIFFERENT
    )


def test_unknown_accounts_are_not_found_debit_first(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    missing_both = transfer(tb.id(), credit=tb.id())
    missing_credit = transfer(pair[0], credit=tb.id())

    assert transfer_status(ledger_backend, missing_both) == S.DEBIT_ACCOUNT_NOT_FOUND
    assert transfer_status(ledger_backend, missing_credit) == S.CREDIT_ACCOUNT_NOT_FOUND


def test_accounts_on_different_ledgers_cannot_transact(ledger_backend: LedgerBackend) -> None:
    usd, eur = create_accounts(ledger_backend, account(ledger=LEDGER), account(ledger=LEDGER + 1))

    assert transfer_status(ledger_backend, transfer(usd, credit=eur)) == (
        S.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
    )


def test_a_debit_beyond_credits_is_refused_when_debits_must_not_exceed_credits(
    ledger_backend: LedgerBackend,
) -> None:
    funding, wallet = new_accounts(ledger_backend, AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    post(ledger_backend, transfer(funding, credit=wallet, amount=100))

    assert (
        transfer_status(ledger_backend, transfer(wallet, credit=funding, amount=101))
        == S.EXCEEDS_CREDITS
    )
    assert (
        transfer_status(ledger_backend, transfer(wallet, credit=funding, amount=100)) == S.CREATED
    )


def test_a_credit_beyond_debits_is_refused_when_credits_must_not_exceed_debits(
    ledger_backend: LedgerBackend,
) -> None:
    other, bounded = new_accounts(ledger_backend, AF.NONE, AF.CREDITS_MUST_NOT_EXCEED_DEBITS)

    assert (
        transfer_status(ledger_backend, transfer(other, credit=bounded, amount=1))
        == S.EXCEEDS_DEBITS
    )


def test_an_id_that_failed_transiently_can_never_succeed(ledger_backend: LedgerBackend) -> None:
    funding, wallet = new_accounts(ledger_backend, AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    overdraw = transfer(wallet, credit=funding, amount=50)
    assert transfer_status(ledger_backend, overdraw) == S.EXCEEDS_CREDITS
    post(ledger_backend, transfer(funding, credit=wallet, amount=100))

    assert transfer_status(ledger_backend, overdraw) == S.ID_ALREADY_FAILED


def test_an_id_that_failed_validation_can_be_used_once_corrected(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    event = pair_transfer(pair)
    assert transfer_status(ledger_backend, _with(event, code=0)) == S.CODE_MUST_NOT_BE_ZERO

    assert transfer_status(ledger_backend, event) == S.CREATED


def test_overflowing_the_credit_accounts_credits_posted_is_refused(
    ledger_backend: LedgerBackend,
) -> None:
    a, b, c = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(a, credit=b, amount=U128_MAX))

    assert (
        transfer_status(ledger_backend, transfer(c, credit=b, amount=1))
        == S.OVERFLOWS_CREDITS_POSTED
    )


def test_overflowing_the_debit_accounts_debits_posted_is_refused(
    ledger_backend: LedgerBackend,
) -> None:
    a, b, c = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(a, credit=b, amount=U128_MAX))

    assert (
        transfer_status(ledger_backend, transfer(a, credit=c, amount=1))
        == S.OVERFLOWS_DEBITS_POSTED
    )


def test_overflowing_pending_plus_posted_debits_is_refused(ledger_backend: LedgerBackend) -> None:
    a, b, c = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(a, credit=b, amount=U128_MAX - 1, flags=TF.PENDING))

    assert transfer_status(ledger_backend, transfer(a, credit=c, amount=2)) == S.OVERFLOWS_DEBITS


def test_overflowing_pending_plus_posted_credits_is_refused(ledger_backend: LedgerBackend) -> None:
    a, b, c = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(a, credit=b, amount=U128_MAX - 1, flags=TF.PENDING))

    assert transfer_status(ledger_backend, transfer(c, credit=b, amount=2)) == S.OVERFLOWS_CREDITS


def test_overflowing_pending_debits_is_refused(ledger_backend: LedgerBackend) -> None:
    a, b, c = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(a, credit=b, amount=U128_MAX, flags=TF.PENDING))

    refused = transfer(a, credit=c, amount=1, flags=TF.PENDING)

    assert transfer_status(ledger_backend, refused) == S.OVERFLOWS_DEBITS_PENDING


def test_overflowing_pending_credits_is_refused(ledger_backend: LedgerBackend) -> None:
    a, b, c = new_accounts(ledger_backend, AF.NONE, AF.NONE, AF.NONE)
    post(ledger_backend, transfer(a, credit=b, amount=U128_MAX, flags=TF.PENDING))

    refused = transfer(c, credit=b, amount=1, flags=TF.PENDING)

    assert transfer_status(ledger_backend, refused) == S.OVERFLOWS_CREDITS_PENDING


def test_a_linked_chain_posts_all_or_nothing(ledger_backend: LedgerBackend) -> None:
    funding, wallet = new_accounts(ledger_backend, AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    chain = [
        transfer(funding, credit=wallet, amount=100, flags=TF.LINKED),
        transfer(
            wallet, credit=funding, amount=150
        ),  # more than the chain credited: fails the chain
    ]

    results = ledger_backend.create_transfers(chain)

    assert [r.status for r in results] == [S.LINKED_EVENT_FAILED, S.EXCEEDS_CREDITS]
    assert balance_of(ledger_backend, wallet) == (0, 0, 0, 0)
    assert ledger_backend.lookup_transfers([chain[0].id]) == []


def test_later_events_see_the_effects_of_earlier_ones_in_the_batch(
    ledger_backend: LedgerBackend,
) -> None:
    funding, wallet = new_accounts(ledger_backend, AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)

    results = ledger_backend.create_transfers(
        [transfer(funding, credit=wallet, amount=100), transfer(wallet, credit=funding, amount=60)]
    )

    assert [r.status for r in results] == [S.CREATED, S.CREATED]
    assert balance_of(ledger_backend, wallet) == (0, 60, 0, 100)


def test_a_batch_ending_in_a_linked_transfer_leaves_the_chain_open(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    results = ledger_backend.create_transfers(
        [pair_transfer(pair, flags=TF.LINKED), pair_transfer(pair, flags=TF.LINKED)]
    )

    assert [r.status for r in results] == [S.LINKED_EVENT_FAILED, S.LINKED_EVENT_CHAIN_OPEN]


def test_transfer_timestamps_strictly_increase_within_and_across_batches(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account]
) -> None:
    first = ledger_backend.create_transfers([pair_transfer(pair) for _ in range(3)])
    second = ledger_backend.create_transfers([pair_transfer(pair) for _ in range(3)])

    stamps = [r.timestamp for r in first + second]
    assert all(earlier < later for earlier, later in itertools.pairwise(stamps))


@pytest.mark.parametrize("field", ["amount", "id", "ledger", "timeout"])
def test_integers_that_do_not_fit_are_refused_before_sending(
    ledger_backend: LedgerBackend, pair: tuple[tb.Account, tb.Account], field: str
) -> None:
    with pytest.raises(tb.IntegerOverflowError):
        ledger_backend.create_transfers([_with(pair_transfer(pair), **{field: -1})])


def _with(event: tb.Transfer, **changes: Any) -> tb.Transfer:
    fields = {name: getattr(event, name) for name in tb.Transfer.__dataclass_fields__}
    return tb.Transfer(**{**fields, **changes})
