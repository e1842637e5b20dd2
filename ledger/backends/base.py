"""The ledger backend interface: the part of TigerBeetle's client surface the product uses.

Spoken in the `tigerbeetle` package's own types so that the real client and the embedded
engine are interchangeable. Business failures come back as result codes (one
`CreateAccountResult` / `CreateTransferResult` per event, in order, `CREATED` on success),
exactly as TigerBeetle returns them; only an unreachable or failing backend raises, and
always as `LedgerUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from tigerbeetle import (
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateTransferResult,
    QueryFilter,
    Transfer,
)

# TigerBeetle's per-request event limit (message size 1 MiB / 128-byte events).
BATCH_EVENTS_MAX = 8189
UINT128_MAX = 2**128 - 1


def assert_one_result_per_event(*, events: Sequence[object], results: Sequence[object]) -> None:
    """A create_* answer carries one result per event, in order: callers zip them."""
    assert len(results) == len(events), f"{len(results)} results for {len(events)} events"


def assert_lookup_answers(*, ids: Sequence[int], found: Sequence[Account | Transfer]) -> None:
    """A lookup answers only ids it was asked for, at most once per asked id."""
    asked = set(ids)
    found_ids = [item.id for item in found]
    assert len(found_ids) <= len(ids), f"{len(found_ids)} answers for {len(ids)} ids"
    assert asked.issuperset(found_ids), "a lookup answered an id it was not asked for"
    if len(asked) == len(ids):
        assert len(set(found_ids)) == len(found_ids), "a lookup answered one id twice"


class LedgerUnavailable(Exception):
    """The ledger backend could not be reached or failed; the request's outcome is unknown
    for writes (retry with the same ids: TigerBeetle answers `exists` if it was applied)."""


@runtime_checkable
class LedgerBackend(Protocol):
    """What the wallet layer may ask of a ledger. Every method may raise `LedgerUnavailable`."""

    def create_accounts(self, accounts: list[Account]) -> list[CreateAccountResult]: ...

    def create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult]: ...

    def lookup_accounts(self, account_ids: list[int]) -> list[Account]: ...

    def lookup_transfers(self, transfer_ids: list[int]) -> list[Transfer]: ...

    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]: ...

    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]: ...

    def begin_create_transfers(
        self, transfers: list[Transfer]
    ) -> Callable[[], list[CreateTransferResult]]:
        """create_transfers (at most one batch) started now and answered by the returned
        call, so a read sent right behind it travels without waiting for the caller (the real
        client sends a session's requests in order); the engine answers at once. The caller
        always collects the answer."""
        ...

    def begin_lookup_accounts(self, account_ids: list[int]) -> Callable[[], list[Account]]:
        """lookup_accounts (at most one batch of ids) started now and answered by the
        returned call, as begin_create_transfers: a batch's reads travel in order with its
        write while the caller works; the engine answers at once."""
        ...

    def begin_get_account_balances(
        self, account_filter: AccountFilter
    ) -> Callable[[], list[AccountBalance]]:
        """get_account_balances started now and answered by the returned call, so the caller
        can work while the request travels (the real client); the engine answers at once."""
        ...

    def query_accounts(self, query_filter: QueryFilter) -> list[Account]: ...

    def query_transfers(self, query_filter: QueryFilter) -> list[Transfer]: ...

    def close(self) -> None: ...
