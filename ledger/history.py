"""A wallet's history in TigerBeetle, read as selectors: each takes what it reads from.

Wallet accounts keep their history (flag `history`), so TigerBeetle answers a wallet's
transfers and its balance after each of them. Support's wallet page pages through both, the
shadow reads compare MongoDB with the balance just before a later transfer, the copy back
orders voids by their transfers' timestamps, and the TigerBeetle store answers a replay with
the balance right after the original transfer.

Every selector reads from a `LedgerReads` (a ledger backend, or the jobs' batch port
`ledger.batches.LedgerBatches`) and keeps the wallet stores' error contract, so its callers
handle one kind of failure: a ledger that does not answer raises StoreUnavailable, and a
wallet with no registry row raises WalletNotFound. Limit bookkeeping (reservations, older
probes) is never part of a wallet's history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ParamSpec, Protocol, TypeVar

from tigerbeetle import AccountBalance, AccountFilter, Transfer

from domain import errors
from domain.ids import WalletKey
from domain.wallets import WalletBalance
from ledger.backends import LedgerBackend, LedgerUnavailable
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.tb_model import (
    balance_from_snapshot,
    history_filter,
    is_limit_bookkeeping,
    posted_balance_changes,
)
from registry import accounts as account_registry
from registry.accounts import RegisteredAccount

# get_account_balances requests `balances_at` has in flight at once, and the snapshots each
# asks for (one request's most).
BALANCE_READS_IN_FLIGHT_MAX = 256
SNAPSHOTS_PER_READ = BATCH_EVENTS_MAX

_P = ParamSpec("_P")
_R = TypeVar("_R")


class LedgerReads(Protocol):
    """What the selectors read: the part of a ledger backend's surface they use."""

    def lookup_transfers(self, transfer_ids: list[int]) -> list[Transfer]: ...

    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]: ...

    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]: ...


def store_call(method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """`method` called under the wallet stores' error contract: a ledger that does not answer
    (LedgerUnavailable) is StoreUnavailable, as every wallet operation raises it."""
    try:
        return method(*args, **kwargs)
    except LedgerUnavailable as exc:
        raise errors.StoreUnavailable(f"TigerBeetle is unavailable: {exc}") from exc


def recent_transfers(
    ledger: LedgerReads, key: WalletKey, *, limit: int = 20, before_timestamp: int = 0
) -> list[Transfer]:
    """The wallet account's latest transfers, newest first (get_account_transfers);
    `before_timestamp` (TigerBeetle ns, exclusive) pages back from there. Raises
    WalletNotFound for an unregistered wallet, StoreUnavailable when the ledger does not
    answer."""
    tb_account_id = _registered_account_id(key)
    transfers = store_call(
        ledger.get_account_transfers,
        history_filter(
            tb_account_id,
            limit=_with_bookkeeping(limit),
            timestamp_max=before_timestamp - 1 if before_timestamp else 0,
        ),
    )
    return [transfer for transfer in transfers if not is_limit_bookkeeping(transfer)][:limit]


def balance_history(
    ledger: LedgerReads, key: WalletKey, *, limit: int = 20, before_timestamp: int = 0
) -> list[WalletBalance]:
    """The wallet's balance after each of its latest transfers, newest first
    (get_account_balances), paged like `recent_transfers`. Raises WalletNotFound for an
    unregistered wallet, StoreUnavailable when the ledger does not answer."""
    tb_account_id = _registered_account_id(key)
    asked = _with_bookkeeping(limit)
    snapshots = store_call(
        ledger.get_account_balances,
        history_filter(
            tb_account_id,
            limit=asked,
            timestamp_max=before_timestamp - 1 if before_timestamp else 0,
        ),
    )
    changes = posted_balance_changes(snapshots, whole_history=len(snapshots) < asked)
    return [balance_from_snapshot(key, snapshot) for snapshot in changes[:limit]]


def balance_before(ledger: LedgerReads, key: WalletKey, *, tb_timestamp: int) -> WalletBalance:
    """The wallet's balance just before TigerBeetle's `tb_timestamp` (zero before any
    transfer): what a store that had applied everything earlier held. Raises WalletNotFound
    for an unregistered wallet, StoreUnavailable when the ledger does not answer."""
    tb_account_id = _registered_account_id(key)
    snapshots = store_call(
        ledger.get_account_balances,
        history_filter(tb_account_id, limit=1, timestamp_max=tb_timestamp - 1),
    )
    if not snapshots:
        return WalletBalance(key=key, credit_minor=0, debit_minor=0, historical_credit_minor=0)
    return balance_from_snapshot(key, snapshots[0])


def balance_at(
    ledger: LedgerReads, key: WalletKey, *, tb_account_id: int, tb_timestamp: int
) -> WalletBalance:
    """The balance of the wallet's account `tb_account_id` right after its transfer at
    `tb_timestamp`, so a replay answers exactly what the original request answered. Raises
    StoreUnavailable when the ledger does not answer or holds no snapshot at that time."""
    snapshots = store_call(
        ledger.get_account_balances,
        history_filter(
            tb_account_id,
            limit=1,
            timestamp_min=tb_timestamp,
            timestamp_max=tb_timestamp,
            newest_first=False,
        ),
    )
    if not snapshots:
        raise errors.StoreUnavailable("TigerBeetle has no balance snapshot of the transfer.")
    return balance_from_snapshot(key, snapshots[0])


def balances_at(
    ledger: LedgerBackend, points: Sequence[tuple[WalletKey, int, int]]
) -> dict[tuple[int, int], WalletBalance]:
    """The balances right after many transfers, by (account id, timestamp), from `points`
    (wallet, account id, transfer timestamp): what `balance_at` answers for each, read in
    one get_account_balances per account over the span of its timestamps, the requests sent
    BALANCE_READS_IN_FLIGHT_MAX at a time before any answer is collected (a batch's replays:
    a request per item was most of their time). A point that request did not return (a
    span holding more snapshots than one answer) is read alone. Raises StoreUnavailable as
    `balance_at`."""
    spans: dict[int, tuple[WalletKey, int, int]] = {}
    for key, tb_account_id, tb_timestamp in points:
        assert tb_timestamp > 0, "a transfer TigerBeetle holds has a timestamp"
        _, low, high = spans.get(tb_account_id, (key, tb_timestamp, tb_timestamp))
        spans[tb_account_id] = (key, min(low, tb_timestamp), max(high, tb_timestamp))
    found: dict[tuple[int, int], WalletBalance] = {}
    accounts = list(spans.items())
    for start in range(0, len(accounts), BALANCE_READS_IN_FLIGHT_MAX):
        window = accounts[start : start + BALANCE_READS_IN_FLIGHT_MAX]
        answers = []
        failure: errors.StoreUnavailable | None = None
        for tb_account_id, (key, low, high) in window:
            span = history_filter(
                tb_account_id,
                limit=SNAPSHOTS_PER_READ,
                timestamp_min=low,
                timestamp_max=high,
                newest_first=False,
            )
            try:
                answers.append(
                    (tb_account_id, key, store_call(ledger.begin_get_account_balances, span))
                )
            except errors.StoreUnavailable as unavailable:
                failure = failure or unavailable
                break
        for tb_account_id, key, answer in answers:  # every request sent is answered
            try:
                snapshots = store_call(answer)
            except errors.StoreUnavailable as unavailable:
                failure = failure or unavailable
                continue
            for snapshot in snapshots:
                found[(tb_account_id, snapshot.timestamp)] = balance_from_snapshot(key, snapshot)
        if failure is not None:
            raise failure
    for key, tb_account_id, tb_timestamp in points:
        if (tb_account_id, tb_timestamp) not in found:
            found[(tb_account_id, tb_timestamp)] = balance_at(
                ledger, key, tb_account_id=tb_account_id, tb_timestamp=tb_timestamp
            )
    return found


def transfers_by_id(ledger: LedgerReads, tb_transfer_ids: list[int]) -> dict[int, Transfer]:
    """The existing transfers among `tb_transfer_ids`, by id. Raises StoreUnavailable when
    the ledger does not answer."""
    transfers = store_call(ledger.lookup_transfers, tb_transfer_ids)
    return {transfer.id: transfer for transfer in transfers}


def transfer_timestamps(ledger: LedgerReads, tb_transfer_ids: list[int]) -> dict[int, int]:
    """TigerBeetle's timestamps of existing transfers, by id (missing ids left out). Raises
    StoreUnavailable when the ledger does not answer."""
    if not tb_transfer_ids:
        return {}
    transfers = store_call(ledger.lookup_transfers, tb_transfer_ids)
    return {transfer.id: transfer.timestamp for transfer in transfers}


def registered_wallet(key: WalletKey) -> RegisteredAccount:
    """The wallet's registry entry; WalletNotFound for a wallet TigerBeetle never held."""
    registered = account_registry.find_account(key)
    if registered is None:
        raise errors.WalletNotFound(f"No wallet {key.describe()}.")
    return registered


def _registered_account_id(key: WalletKey) -> int:
    return registered_wallet(key).tb_account_id


def _with_bookkeeping(limit: int) -> int:
    """How many of a wallet's newest transfers (or snapshots) to read to find `limit` of its
    own: each may come with an older limit probe and the probe's void, the wallet may hold
    its reservation among them, and `posted_balance_changes` leaves out the oldest read."""
    return min(3 * limit + 2, BATCH_EVENTS_MAX)
