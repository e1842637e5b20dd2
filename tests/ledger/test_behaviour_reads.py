"""Lookups, account transfers and balances, and queries, per TigerBeetle's reference."""

from __future__ import annotations

import pytest
import tigerbeetle as tb

from ledger.backends.base import LedgerBackend
from tests.ledger.builders import (
    AF,
    LEDGER,
    TF,
    account,
    account_filter,
    create_accounts,
    new_accounts,
    pair_transfer,
    post,
    query_filter,
    transfer,
)

AFF = tb.AccountFilterFlags
QFF = tb.QueryFilterFlags


@pytest.fixture
def history(ledger_backend: LedgerBackend) -> dict[str, object]:
    """A `history` account with three transfers: in 100, out 30, in 5 (code 20)."""
    other, tracked = new_accounts(ledger_backend, AF.NONE, AF.HISTORY)
    events = [
        post(ledger_backend, transfer(other, credit=tracked, amount=100)),
        post(ledger_backend, transfer(tracked, credit=other, amount=30)),
        post(ledger_backend, transfer(other, credit=tracked, amount=5, code=20)),
    ]
    return {"tracked": tracked, "other": other, "events": events}


def test_lookup_returns_found_accounts_in_request_order_and_skips_missing(
    ledger_backend: LedgerBackend,
) -> None:
    first, second = new_accounts(ledger_backend, AF.NONE, AF.NONE)

    found = ledger_backend.lookup_accounts([second.id, tb.id(), first.id])

    assert [a.id for a in found] == [second.id, first.id]


def test_lookup_transfers_skips_missing_ids(ledger_backend: LedgerBackend) -> None:
    event = post(ledger_backend, pair_transfer(new_accounts(ledger_backend, AF.NONE, AF.NONE)))

    found = ledger_backend.lookup_transfers([tb.id(), event.id])

    assert [t.id for t in found] == [event.id]


def test_lookup_keeps_128_bit_values_exact(ledger_backend: LedgerBackend) -> None:
    big = 2**128 - 2
    (created,) = create_accounts(ledger_backend, account(user_data_128=big, user_data_64=2**64 - 1))

    (found,) = ledger_backend.lookup_accounts([created.id])

    assert (found.user_data_128, found.user_data_64) == (big, 2**64 - 1)


def test_account_transfers_come_oldest_first(ledger_backend: LedgerBackend, history: dict) -> None:
    found = ledger_backend.get_account_transfers(account_filter(history["tracked"]))

    assert [t.id for t in found] == [e.id for e in history["events"]]


def test_account_transfers_reversed_come_newest_first_and_respect_the_limit(
    ledger_backend: LedgerBackend, history: dict
) -> None:
    newest_two = ledger_backend.get_account_transfers(
        account_filter(history["tracked"], limit=2, flags=AFF.DEBITS | AFF.CREDITS | AFF.REVERSED)
    )

    assert [t.id for t in newest_two] == [e.id for e in history["events"][::-1][:2]]


def test_account_transfers_can_be_only_debits_or_only_credits(
    ledger_backend: LedgerBackend, history: dict
) -> None:
    debits = ledger_backend.get_account_transfers(
        account_filter(history["tracked"], flags=AFF.DEBITS)
    )
    credits = ledger_backend.get_account_transfers(
        account_filter(history["tracked"], flags=AFF.CREDITS)
    )

    assert [t.amount for t in debits] == [30]
    assert [t.amount for t in credits] == [100, 5]


def test_account_transfers_filter_by_code_and_timestamp_range(
    ledger_backend: LedgerBackend, history: dict
) -> None:
    events = ledger_backend.get_account_transfers(account_filter(history["tracked"]))
    by_code = ledger_backend.get_account_transfers(account_filter(history["tracked"], code=20))
    middle = ledger_backend.get_account_transfers(
        account_filter(
            history["tracked"], timestamp_min=events[1].timestamp, timestamp_max=events[1].timestamp
        )
    )

    assert [t.amount for t in by_code] == [5]
    assert [t.amount for t in middle] == [30]


@pytest.mark.parametrize(
    "invalid",
    [
        {"limit": 0},
        {"flags": AFF.NONE},
        {"flags": AFF.REVERSED},
        {"timestamp_min": 10, "timestamp_max": 5},
        {"account_id": 0},
    ],
    ids=["zero_limit", "no_direction", "reversed_only", "min_after_max", "zero_account"],
)
def test_an_invalid_account_filter_answers_an_empty_list(
    ledger_backend: LedgerBackend, history: dict, invalid: dict
) -> None:
    # The parameter dict is shared by both backends' runs: read it, never pop from it.
    target = invalid.get("account_id", history["tracked"])
    fields = {name: value for name, value in invalid.items() if name != "account_id"}

    assert ledger_backend.get_account_transfers(account_filter(target, **fields)) == []


def test_balances_of_a_history_account_follow_each_transfer(
    ledger_backend: LedgerBackend, history: dict
) -> None:
    balances = ledger_backend.get_account_balances(account_filter(history["tracked"]))

    assert [(b.debits_posted, b.credits_posted) for b in balances] == [
        (0, 100),
        (30, 100),
        (30, 105),
    ]
    transfers = ledger_backend.get_account_transfers(account_filter(history["tracked"]))
    assert [b.timestamp for b in balances] == [t.timestamp for t in transfers]


def test_an_account_without_history_has_no_balances(
    ledger_backend: LedgerBackend, history: dict
) -> None:
    assert ledger_backend.get_account_balances(account_filter(history["other"])) == []


def test_balances_include_pending_amounts(ledger_backend: LedgerBackend) -> None:
    other, tracked = new_accounts(ledger_backend, AF.NONE, AF.HISTORY)
    post(ledger_backend, transfer(other, credit=tracked, amount=9, flags=TF.PENDING))

    (snapshot,) = ledger_backend.get_account_balances(account_filter(tracked))

    assert (snapshot.credits_pending, snapshot.credits_posted) == (9, 0)


def test_query_accounts_finds_accounts_by_user_data(ledger_backend: LedgerBackend) -> None:
    owner = tb.id()
    mine = create_accounts(
        ledger_backend, account(user_data_128=owner), account(user_data_128=owner, user_data_32=3)
    )
    create_accounts(ledger_backend, account(user_data_128=tb.id()))

    found = ledger_backend.query_accounts(query_filter(user_data_128=owner))
    narrowed = ledger_backend.query_accounts(query_filter(user_data_128=owner, user_data_32=3))

    assert [a.id for a in found] == [a.id for a in mine]
    assert [a.id for a in narrowed] == [mine[1].id]


def test_query_accounts_filters_by_ledger_and_code_newest_first_when_reversed(
    ledger_backend: LedgerBackend,
) -> None:
    owner = tb.id()
    first, second, _ = create_accounts(
        ledger_backend,
        account(user_data_64=owner % 2**64, ledger=LEDGER),
        account(user_data_64=owner % 2**64, ledger=LEDGER),
        account(user_data_64=owner % 2**64, ledger=LEDGER, code=99),
    )

    found = ledger_backend.query_accounts(
        query_filter(user_data_64=owner % 2**64, ledger=LEDGER, code=first.code, flags=QFF.REVERSED)
    )

    assert [a.id for a in found] == [second.id, first.id]


def test_query_transfers_finds_transfers_by_user_data_with_a_limit(
    ledger_backend: LedgerBackend,
) -> None:
    tag = tb.id()
    debit, credit = new_accounts(ledger_backend, AF.NONE, AF.NONE)
    tagged = [
        post(ledger_backend, transfer(debit, credit=credit, user_data_128=tag)) for _ in range(3)
    ]
    post(ledger_backend, transfer(debit, credit=credit))

    found = ledger_backend.query_transfers(query_filter(user_data_128=tag, limit=2))

    assert [t.id for t in found] == [t.id for t in tagged[:2]]


def test_an_invalid_query_filter_answers_an_empty_list(ledger_backend: LedgerBackend) -> None:
    tag = tb.id()
    create_accounts(ledger_backend, account(user_data_128=tag))

    assert ledger_backend.query_accounts(query_filter(user_data_128=tag, limit=0)) == []
    assert (
        ledger_backend.query_accounts(
            query_filter(user_data_128=tag, timestamp_min=10, timestamp_max=5)
        )
        == []
    )
