"""create_accounts, per TigerBeetle's reference (requests/create_accounts.md), on every backend."""

from __future__ import annotations

from typing import Any

import pytest
import tigerbeetle as tb

from ledger.backends.base import LedgerBackend
from tests.ledger.builders import AF, account, account_status, create_accounts

S = tb.CreateAccountStatus
U128_MAX = 2**128 - 1


def test_a_new_account_is_created_with_a_ledger_assigned_timestamp(
    ledger_backend: LedgerBackend,
) -> None:
    (result,) = ledger_backend.create_accounts([account()])

    assert result.status == S.CREATED
    assert result.timestamp > 0


def test_timestamps_of_created_accounts_strictly_increase(ledger_backend: LedgerBackend) -> None:
    results = ledger_backend.create_accounts([account() for _ in range(5)])

    stamps = [r.timestamp for r in results]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5


def test_creating_the_same_account_again_answers_exists(ledger_backend: LedgerBackend) -> None:
    (created,) = create_accounts(ledger_backend, account(user_data_32=7))

    assert account_status(ledger_backend, created) == S.EXISTS


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("flags", AF.HISTORY, S.EXISTS_WITH_DIFFERENT_FLAGS),
        ("user_data_128", 5, S.EXISTS_WITH_DIFFERENT_USER_DATA_128),
        ("user_data_64", 5, S.EXISTS_WITH_DIFFERENT_USER_DATA_64),
        ("user_data_32", 5, S.EXISTS_WITH_DIFFERENT_USER_DATA_32),
        ("ledger", 701, S.EXISTS_WITH_DIFFERENT_LEDGER),
        ("code", 11, S.EXISTS_WITH_DIFFERENT_CODE),
    ],
)
def test_the_same_id_with_a_different_field_answers_exists_with_different_that_field(
    ledger_backend: LedgerBackend, field: str, value: Any, expected: S
) -> None:
    (created,) = create_accounts(ledger_backend, account())
    changed = account(**{**_fields(created), field: value})

    assert account_status(ledger_backend, changed) == expected


def test_exists_with_different_flags_takes_precedence_over_other_differences(
    ledger_backend: LedgerBackend,
) -> None:
    (created,) = create_accounts(ledger_backend, account())
    changed = account(**{**_fields(created), "flags": AF.HISTORY, "code": 99, "ledger": 9})

    assert account_status(ledger_backend, changed) == S.EXISTS_WITH_DIFFERENT_FLAGS


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"id": 0}, S.ID_MUST_NOT_BE_ZERO),
        ({"id": U128_MAX}, S.ID_MUST_NOT_BE_INT_MAX),
        ({"timestamp": 1}, S.TIMESTAMP_MUST_BE_ZERO),
        ({"flags": AF(1 << 9)}, S.RESERVED_FLAG),
        (
            {"flags": AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS},
            S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        ),
        ({"debits_pending": 1}, S.DEBITS_PENDING_MUST_BE_ZERO),
        ({"debits_posted": 1}, S.DEBITS_POSTED_MUST_BE_ZERO),
        ({"credits_pending": 1}, S.CREDITS_PENDING_MUST_BE_ZERO),
        ({"credits_posted": 1}, S.CREDITS_POSTED_MUST_BE_ZERO),
        ({"ledger": 0}, S.LEDGER_MUST_NOT_BE_ZERO),
        ({"code": 0}, S.CODE_MUST_NOT_BE_ZERO),
    ],
    ids=lambda value: value.name.lower() if isinstance(value, S) else "",
)
def test_an_invalid_account_is_refused_with_its_result_code(
    ledger_backend: LedgerBackend, fields: dict[str, Any], expected: S
) -> None:
    assert account_status(ledger_backend, account(**fields)) == expected


def test_a_nonzero_timestamp_is_refused_before_a_zero_id(ledger_backend: LedgerBackend) -> None:
    assert account_status(ledger_backend, account(id=0, timestamp=1)) == S.TIMESTAMP_MUST_BE_ZERO


def test_a_zero_ledger_is_reported_before_a_zero_code(ledger_backend: LedgerBackend) -> None:
    assert account_status(ledger_backend, account(ledger=0, code=0)) == S.LEDGER_MUST_NOT_BE_ZERO


def test_a_linked_chain_is_created_together(ledger_backend: LedgerBackend) -> None:
    chain = [account(flags=AF.LINKED), account(flags=AF.LINKED), account()]

    results = ledger_backend.create_accounts(chain)

    assert [r.status for r in results] == [S.CREATED] * 3
    assert len(ledger_backend.lookup_accounts([a.id for a in chain])) == 3


def test_one_invalid_account_fails_its_whole_linked_chain(ledger_backend: LedgerBackend) -> None:
    chain = [account(flags=AF.LINKED), account(flags=AF.LINKED, code=0), account()]
    after = account()

    results = ledger_backend.create_accounts([*chain, after])

    assert [r.status for r in results] == [
        S.LINKED_EVENT_FAILED,
        S.CODE_MUST_NOT_BE_ZERO,
        S.LINKED_EVENT_FAILED,
        S.CREATED,
    ]
    assert ledger_backend.lookup_accounts([a.id for a in chain]) == []


def test_a_batch_ending_in_a_linked_event_leaves_the_chain_open(
    ledger_backend: LedgerBackend,
) -> None:
    results = ledger_backend.create_accounts(
        [account(), account(flags=AF.LINKED), account(flags=AF.LINKED)]
    )

    assert [r.status for r in results] == [
        S.CREATED,
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_CHAIN_OPEN,
    ]


def test_an_existing_account_inside_a_chain_fails_the_chain(ledger_backend: LedgerBackend) -> None:
    (existing,) = create_accounts(ledger_backend, account())
    fresh = account(flags=AF.LINKED)

    results = ledger_backend.create_accounts([fresh, existing])

    assert [r.status for r in results] == [S.LINKED_EVENT_FAILED, S.EXISTS]
    assert ledger_backend.lookup_accounts([fresh.id]) == []


def test_an_imported_account_keeps_its_past_timestamp(ledger_backend: LedgerBackend) -> None:
    base = _latest_timestamp(ledger_backend)
    imported = account(flags=AF.IMPORTED, timestamp=base + 1)

    assert account_status(ledger_backend, imported) == S.CREATED
    assert ledger_backend.lookup_accounts([imported.id])[0].timestamp == base + 1


def test_a_batch_cannot_mix_imported_and_ordinary_accounts(ledger_backend: LedgerBackend) -> None:
    base = _latest_timestamp(ledger_backend)

    imported_first = ledger_backend.create_accounts(
        [account(flags=AF.IMPORTED, timestamp=base + 1), account()]
    )
    ordinary_first = ledger_backend.create_accounts(
        [account(), account(flags=AF.IMPORTED, timestamp=base + 2)]
    )

    assert imported_first[1].status == S.IMPORTED_EVENT_EXPECTED
    assert ordinary_first[1].status == S.IMPORTED_EVENT_NOT_EXPECTED


def test_an_imported_timestamp_of_zero_is_out_of_range(ledger_backend: LedgerBackend) -> None:
    imported = account(flags=AF.IMPORTED, timestamp=0)

    assert account_status(ledger_backend, imported) == S.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE


def test_an_imported_timestamp_in_the_future_is_refused(ledger_backend: LedgerBackend) -> None:
    future = account(flags=AF.IMPORTED, timestamp=2**62)

    assert account_status(ledger_backend, future) == S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE


def test_an_imported_timestamp_must_not_regress(ledger_backend: LedgerBackend) -> None:
    base = _latest_timestamp(ledger_backend)
    create_accounts(ledger_backend, account(flags=AF.IMPORTED, timestamp=base + 5))

    earlier = account(flags=AF.IMPORTED, timestamp=base + 3)

    assert account_status(ledger_backend, earlier) == S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS


@pytest.mark.parametrize("field", ["id", "ledger", "code", "user_data_64"])
def test_integers_that_do_not_fit_are_refused_before_sending(
    ledger_backend: LedgerBackend, field: str
) -> None:
    with pytest.raises(tb.IntegerOverflowError):
        ledger_backend.create_accounts([account(**{field: -1})])


def _fields(created: tb.Account) -> dict[str, Any]:
    return {
        "id": created.id,
        "user_data_128": created.user_data_128,
        "user_data_64": created.user_data_64,
        "user_data_32": created.user_data_32,
        "ledger": created.ledger,
        "code": created.code,
        "flags": created.flags,
    }


def _latest_timestamp(backend: LedgerBackend) -> int:
    """A timestamp at least as late as anything on the ledger (ours is the newest object)."""
    (result,) = backend.create_accounts([account()])
    return result.timestamp
