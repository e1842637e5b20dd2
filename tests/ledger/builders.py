"""Builders for the ledger behaviour suite.

Every object gets a fresh random id (tigerbeetle.id()) and every query is scoped by a fresh
user_data value, so the suite also runs against a persistent real cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tigerbeetle as tb

from ledger.backends.base import LedgerBackend, LedgerUnavailable

LEDGER = 700
CODE = 10
AF = tb.AccountFlags
TF = tb.TransferFlags


def account(**fields: Any) -> tb.Account:
    defaults: dict[str, Any] = {"id": tb.id(), "ledger": LEDGER, "code": CODE}
    return tb.Account(**{**defaults, **fields})


def create_accounts(backend: LedgerBackend, *accounts: tb.Account) -> list[tb.Account]:
    results = backend.create_accounts(list(accounts))
    assert [r.status for r in results] == [tb.CreateAccountStatus.CREATED] * len(accounts)
    return list(accounts)


def new_accounts(backend: LedgerBackend, *flags: tb.AccountFlags) -> list[tb.Account]:
    return create_accounts(backend, *(account(flags=f) for f in flags))


def transfer(
    debit: tb.Account | int, *, credit: tb.Account | int, amount: int = 10, **fields: Any
) -> tb.Transfer:
    """The account debited first; the one credited by name, so the direction never flips."""
    defaults: dict[str, Any] = {
        "id": tb.id(),
        "debit_account_id": debit if isinstance(debit, int) else debit.id,
        "credit_account_id": credit if isinstance(credit, int) else credit.id,
        "amount": amount,
        "ledger": LEDGER,
        "code": CODE,
    }
    return tb.Transfer(**{**defaults, **fields})


def pair_transfer(pair: Sequence[tb.Account], **fields: Any) -> tb.Transfer:
    """A transfer debiting the pair's first account and crediting its second."""
    debit, credit = pair
    return transfer(debit, credit=credit, **fields)


def account_status(backend: LedgerBackend, event: tb.Account) -> tb.CreateAccountStatus:
    (result,) = backend.create_accounts([event])
    return result.status


def transfer_status(backend: LedgerBackend, event: tb.Transfer) -> tb.CreateTransferStatus:
    (result,) = backend.create_transfers([event])
    return result.status


def post(backend: LedgerBackend, event: tb.Transfer) -> tb.Transfer:
    assert transfer_status(backend, event) == tb.CreateTransferStatus.CREATED
    return event


def balance_of(backend: LedgerBackend, target: tb.Account) -> tuple[int, int, int, int]:
    (found,) = backend.lookup_accounts([target.id])
    return (found.debits_pending, found.debits_posted, found.credits_pending, found.credits_posted)


def account_filter(target: tb.Account | int, **fields: Any) -> tb.AccountFilter:
    defaults: dict[str, Any] = {
        "account_id": target if isinstance(target, int) else target.id,
        "user_data_128": 0,
        "user_data_64": 0,
        "user_data_32": 0,
        "code": 0,
        "timestamp_min": 0,
        "timestamp_max": 0,
        "limit": 100,
        "flags": tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS,
    }
    return tb.AccountFilter(**{**defaults, **fields})


def query_filter(**fields: Any) -> tb.QueryFilter:
    defaults: dict[str, Any] = {
        "user_data_128": 0,
        "user_data_64": 0,
        "user_data_32": 0,
        "ledger": 0,
        "code": 0,
        "timestamp_min": 0,
        "timestamp_max": 0,
        "limit": 100,
        "flags": tb.QueryFilterFlags.NONE,
    }
    return tb.QueryFilter(**{**defaults, **fields})


class UnreachableLedger:
    """A ledger backend that never answers (every call raises LedgerUnavailable, as the real
    client does when the cluster is down); `asked` counts the calls."""

    def __init__(self) -> None:
        self.asked = 0

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.asked += 1
            raise LedgerUnavailable("connection refused (test: cluster down)")

        return call
