"""EngineBackend: the LedgerBackend protocol on the Django database.

Each create_* call is one database transaction that first locks the clock row, so writers
from any number of threads and processes are serialised (as a TigerBeetle cluster serialises
requests) and timestamps stay strictly increasing. The batch is processed set-wise: a few
queries load what it refers to, the state machine runs in memory, bulk statements write the
result. Reads take no lock.

Pending transfers expire at the start of the next write; until then, reads of accounts
show them as expired already (the server's expiry pulse runs within milliseconds of a
timeout).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any, TypeVar

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from tigerbeetle import (
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    IntegerOverflowError,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
)
from tigerbeetle.bindings import CAccount, CAccountFilter, CQueryFilter, CTransfer

from domain.ids import hex_to_u128, u128_to_hex
from ledger.backends.base import (
    BATCH_EVENTS_MAX,
    LedgerUnavailable,
    assert_lookup_answers,
    assert_one_result_per_event,
)
from ledger.engine import state_machine
from ledger.engine.models import (
    AccountBalanceSnapshot,
    Clock,
    FailedTransferId,
    LedgerAccount,
    LedgerTransfer,
    PendingStatus,
)

T = TypeVar("T")
IN_CHUNK = 900  # stays under every database's bound-parameter limit

ACCOUNT_COLUMNS = (
    "id", "debits_pending", "debits_posted", "credits_pending", "credits_posted",
    "user_data_128", "user_data_64", "user_data_32", "ledger", "code", "flags", "timestamp",
)  # fmt: skip
TRANSFER_COLUMNS = (
    "id", "debit_account_id", "credit_account_id", "amount", "pending_id", "user_data_128",
    "user_data_64", "user_data_32", "timeout", "ledger", "code", "flags", "timestamp",
    "pending_status", "expires_at",
)  # fmt: skip
SNAPSHOT_COLUMNS = (
    "timestamp", "debits_pending", "debits_posted", "credits_pending", "credits_posted",
)  # fmt: skip


def _u64_to_hex(value: int) -> str:
    return f"{value:016x}"


def _unavailable_on_database_error(method: Callable[..., T]) -> Callable[..., T]:
    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except DatabaseError as exc:
            raise LedgerUnavailable(f"embedded ledger database failed: {exc}") from exc

    return wrapper


def _validate(events: Iterable[Any], c_type: Any) -> None:
    """Refuse what the real client refuses before sending: negative or too-wide integers
    (tigerbeetle.IntegerOverflowError), through the client's own validation."""
    for event in events:
        c_type.from_param(event)


def _chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _account_state(row: tuple[Any, ...]) -> state_machine.AccountState:
    return state_machine.AccountState(
        id=hex_to_u128(row[0]),
        debits_pending=hex_to_u128(row[1]),
        debits_posted=hex_to_u128(row[2]),
        credits_pending=hex_to_u128(row[3]),
        credits_posted=hex_to_u128(row[4]),
        user_data_128=hex_to_u128(row[5]),
        user_data_64=int(row[6], 16),
        user_data_32=row[7],
        ledger=row[8],
        code=row[9],
        flags=row[10],
        timestamp=row[11],
    )


def _account_balance(row: tuple[Any, ...]) -> AccountBalance:
    """An AccountBalanceSnapshot row, read as SNAPSHOT_COLUMNS."""
    return AccountBalance(
        debits_pending=hex_to_u128(row[1]),
        debits_posted=hex_to_u128(row[2]),
        credits_pending=hex_to_u128(row[3]),
        credits_posted=hex_to_u128(row[4]),
        timestamp=row[0],
    )


def _transfer_state(row: tuple[Any, ...]) -> state_machine.TransferState:
    return state_machine.TransferState(
        id=hex_to_u128(row[0]),
        debit_account_id=hex_to_u128(row[1]),
        credit_account_id=hex_to_u128(row[2]),
        amount=hex_to_u128(row[3]),
        pending_id=hex_to_u128(row[4]),
        user_data_128=hex_to_u128(row[5]),
        user_data_64=int(row[6], 16),
        user_data_32=row[7],
        timeout=row[8],
        ledger=row[9],
        code=row[10],
        flags=row[11],
        timestamp=row[12],
        pending_status=row[13],
        expires_at=row[14],
    )


class EngineBackend:
    """TigerBeetle semantics on the Django database (the default ledger backend)."""

    # --- writes --------------------------------------------------------------------------

    @_unavailable_on_database_error
    def create_accounts(self, accounts: list[Account]) -> list[CreateAccountResult]:
        _validate(accounts, CAccount)
        if not accounts:
            return []
        with transaction.atomic():
            state = self._begin()
            ids = list({account.id for account in accounts})
            self._load_accounts(state, ids)
            if accounts[0].flags & AccountFlags.IMPORTED:
                state.foreign_timestamps = self._existing_timestamps(
                    LedgerTransfer, [account.timestamp for account in accounts]
                )
            outcomes = state_machine.create_accounts(state, accounts)
            assert_one_result_per_event(events=accounts, results=outcomes)
            self._persist(state)
        return [
            CreateAccountResult(timestamp=timestamp, status=CreateAccountStatus(status))
            for status, timestamp in outcomes
        ]

    @_unavailable_on_database_error
    def create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult]:
        _validate(transfers, CTransfer)
        if not transfers:
            return []
        with transaction.atomic():
            state = self._begin()
            self._expire_due(state)
            referenced = list(
                {transfer.id for transfer in transfers}
                | {transfer.pending_id for transfer in transfers}
            )
            self._load_transfers(state, [transfer_id for transfer_id in referenced if transfer_id])
            account_ids = {transfer.debit_account_id for transfer in transfers} | {
                transfer.credit_account_id for transfer in transfers
            }
            for pending in state.transfers.values():
                account_ids |= {pending.debit_account_id, pending.credit_account_id}
            self._load_accounts(state, [account_id for account_id in account_ids if account_id])
            self._load_failed(state, [transfer.id for transfer in transfers])
            if transfers[0].flags & TransferFlags.IMPORTED:
                state.foreign_timestamps = self._existing_timestamps(
                    LedgerAccount, [transfer.timestamp for transfer in transfers]
                )
            outcomes = state_machine.create_transfers(state, transfers)
            assert_one_result_per_event(events=transfers, results=outcomes)
            self._persist(state)
        return [
            CreateTransferResult(timestamp=timestamp, status=CreateTransferStatus(status))
            for status, timestamp in outcomes
        ]

    # --- point reads ---------------------------------------------------------------------

    @_unavailable_on_database_error
    def lookup_accounts(self, account_ids: list[int]) -> list[Account]:
        _validate_ids(account_ids)
        found: dict[int, state_machine.AccountState] = {}
        for chunk in _chunks([u128_to_hex(account_id) for account_id in set(account_ids)]):
            for row in LedgerAccount.objects.filter(id__in=chunk).values_list(*ACCOUNT_COLUMNS):
                account = _account_state(row)
                found[account.id] = account
        _show_due_expiries(found)
        accounts = [
            found[account_id].to_account() for account_id in account_ids if account_id in found
        ]
        assert_lookup_answers(ids=account_ids, found=accounts)
        return accounts

    @_unavailable_on_database_error
    def lookup_transfers(self, transfer_ids: list[int]) -> list[Transfer]:
        _validate_ids(transfer_ids)
        found: dict[int, Transfer] = {}
        for chunk in _chunks([u128_to_hex(transfer_id) for transfer_id in set(transfer_ids)]):
            rows = LedgerTransfer.objects.filter(id__in=chunk).values_list(*TRANSFER_COLUMNS)
            for row in rows:
                transfer = _transfer_state(row).to_transfer()
                found[transfer.id] = transfer
        transfers = [found[transfer_id] for transfer_id in transfer_ids if transfer_id in found]
        assert_lookup_answers(ids=transfer_ids, found=transfers)
        return transfers

    # --- filtered reads ------------------------------------------------------------------

    @_unavailable_on_database_error
    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]:
        CAccountFilter.from_param(account_filter)
        if not _account_filter_valid(account_filter):
            return []
        account_hex = u128_to_hex(account_filter.account_id)
        rows = LedgerTransfer.objects.all()
        wants_debits = account_filter.flags & AccountFilterFlags.DEBITS
        wants_credits = account_filter.flags & AccountFilterFlags.CREDITS
        if wants_debits and wants_credits:
            rows = rows.filter(Q(debit_account_id=account_hex) | Q(credit_account_id=account_hex))
        elif wants_debits:
            rows = rows.filter(debit_account_id=account_hex)
        else:
            rows = rows.filter(credit_account_id=account_hex)
        rows = _filter_common(rows, account_filter)
        reverse = bool(account_filter.flags & AccountFilterFlags.REVERSED)
        rows = rows.order_by("-timestamp" if reverse else "timestamp")
        limit = min(account_filter.limit, BATCH_EVENTS_MAX)
        return [
            _transfer_state(row).to_transfer()
            for row in rows.values_list(*TRANSFER_COLUMNS)[:limit]
        ]

    def begin_create_transfers(
        self, transfers: list[Transfer]
    ) -> Callable[[], list[CreateTransferResult]]:
        """Answered at once: the engine works on the caller's database connection."""
        results = self.create_transfers(transfers)
        return lambda: results

    def begin_lookup_accounts(self, account_ids: list[int]) -> Callable[[], list[Account]]:
        """Answered at once: the engine works on the caller's database connection."""
        accounts = self.lookup_accounts(account_ids)
        return lambda: accounts

    def begin_get_account_balances(
        self, account_filter: AccountFilter
    ) -> Callable[[], list[AccountBalance]]:
        """Answered at once: the engine works on the caller's database connection."""
        found = self.get_account_balances(account_filter)
        return lambda: found

    @_unavailable_on_database_error
    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]:
        """Balances after each matching transfer; only accounts with `history` keep them."""
        CAccountFilter.from_param(account_filter)
        if not _account_filter_valid(account_filter):
            return []
        account_hex = u128_to_hex(account_filter.account_id)
        both_sides = account_filter.flags & AccountFilterFlags.DEBITS and (
            account_filter.flags & AccountFilterFlags.CREDITS
        )
        by_transfer_fields = (
            account_filter.user_data_128
            or account_filter.user_data_64
            or account_filter.user_data_32
            or account_filter.code
        )
        if both_sides and not by_transfer_fields:
            # Snapshots are written for exactly the transfers that touch a history account,
            # so they answer this filter alone: one query instead of three.
            return _snapshots_in_range(account_hex, account_filter)
        account = LedgerAccount.objects.filter(id=account_hex).values_list("flags").first()
        if account is None or not account[0] & AccountFlags.HISTORY:
            return []
        transfers = self.get_account_transfers(account_filter)
        if not transfers:
            return []
        timestamps = [transfer.timestamp for transfer in transfers]
        rows = AccountBalanceSnapshot.objects.filter(
            account_id=account_hex, timestamp__in=timestamps
        ).values_list(*SNAPSHOT_COLUMNS)
        snapshot_at = {row[0]: row for row in rows}
        return [
            _account_balance(snapshot_at[timestamp])
            for timestamp in timestamps
            if timestamp in snapshot_at
        ]

    @_unavailable_on_database_error
    def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        CQueryFilter.from_param(query_filter)
        if not _query_filter_valid(query_filter):
            return []
        rows = _filter_query(LedgerAccount.objects.all(), query_filter)
        limit = min(query_filter.limit, BATCH_EVENTS_MAX)
        found = [_account_state(row) for row in rows.values_list(*ACCOUNT_COLUMNS)[:limit]]
        _show_due_expiries({account.id: account for account in found})
        return [account.to_account() for account in found]

    @_unavailable_on_database_error
    def query_transfers(self, query_filter: QueryFilter) -> list[Transfer]:
        CQueryFilter.from_param(query_filter)
        if not _query_filter_valid(query_filter):
            return []
        rows = _filter_query(LedgerTransfer.objects.all(), query_filter)
        limit = min(query_filter.limit, BATCH_EVENTS_MAX)
        return [
            _transfer_state(row).to_transfer()
            for row in rows.values_list(*TRANSFER_COLUMNS)[:limit]
        ]

    def close(self) -> None:
        """Nothing to release: connections belong to Django."""

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _begin() -> state_machine.BatchState:
        clock = Clock.objects.select_for_update().filter(pk=1).first()
        if clock is None:  # migration 0002 creates it; a flushed database lost it
            Clock.objects.get_or_create(pk=1)
            clock = Clock.objects.select_for_update().get(pk=1)
        return state_machine.BatchState(
            now_ns=time.time_ns(),
            clock=state_machine.ClockState(
                last_timestamp=clock.last_timestamp,
                last_account_timestamp=clock.last_account_timestamp,
                last_transfer_timestamp=clock.last_transfer_timestamp,
            ),
        )

    @staticmethod
    def _load_accounts(state: state_machine.BatchState, account_ids: Sequence[int]) -> None:
        missing = [
            u128_to_hex(account_id)
            for account_id in account_ids
            if account_id not in state.accounts
        ]
        for chunk in _chunks(missing):
            for row in LedgerAccount.objects.filter(id__in=chunk).values_list(*ACCOUNT_COLUMNS):
                account = _account_state(row)
                state.accounts[account.id] = account

    @staticmethod
    def _load_transfers(state: state_machine.BatchState, transfer_ids: Sequence[int]) -> None:
        missing = [
            u128_to_hex(transfer_id)
            for transfer_id in transfer_ids
            if transfer_id not in state.transfers
        ]
        for chunk in _chunks(missing):
            rows = LedgerTransfer.objects.filter(id__in=chunk).values_list(*TRANSFER_COLUMNS)
            for row in rows:
                transfer = _transfer_state(row)
                state.transfers[transfer.id] = transfer

    @staticmethod
    def _load_failed(state: state_machine.BatchState, transfer_ids: Sequence[int]) -> None:
        for chunk in _chunks([u128_to_hex(transfer_id) for transfer_id in set(transfer_ids)]):
            for failed_id, status in FailedTransferId.objects.filter(id__in=chunk).values_list(
                "id", "status"
            ):
                state.failed_ids[hex_to_u128(failed_id)] = status

    @staticmethod
    def _existing_timestamps(model: Any, timestamps: Sequence[int]) -> set[int]:
        found: set[int] = set()
        valid = [
            timestamp
            for timestamp in set(timestamps)
            if 0 < timestamp < state_machine.TIMESTAMP_LIMIT
        ]
        for chunk in _chunks(valid):
            found |= set(
                model.objects.filter(timestamp__in=chunk).values_list("timestamp", flat=True)
            )
        return found

    def _expire_due(self, state: state_machine.BatchState) -> None:
        rows = LedgerTransfer.objects.filter(
            pending_status=PendingStatus.PENDING, expires_at__lte=state.now_ns
        ).values_list(*TRANSFER_COLUMNS)
        due = [_transfer_state(row) for row in rows]
        if not due:
            return
        for pending in due:
            state.transfers[pending.id] = pending
        self._load_accounts(
            state,
            [pending.debit_account_id for pending in due]
            + [pending.credit_account_id for pending in due],
        )
        state_machine.expire(state, due)

    @staticmethod
    def _persist(state: state_machine.BatchState) -> None:
        """Write what the batch changed: new and changed accounts and transfers, balance
        snapshots, failed ids, the clock."""
        new_accounts = [account for account in state.accounts.values() if not account.persisted]
        changed_accounts = [
            account for account in state.accounts.values() if account.persisted and account.dirty
        ]
        state_machine.assert_balance_limits(new_accounts + changed_accounts)
        new_transfers = [
            transfer for transfer in state.transfers.values() if not transfer.persisted
        ]
        changed_transfers = [
            transfer
            for transfer in state.transfers.values()
            if transfer.persisted and transfer.status_dirty
        ]
        _insert_accounts(new_accounts)
        _update_changed(changed_accounts, changed_transfers)
        _insert_transfers(new_transfers)
        _insert_snapshots(state.snapshots)
        _insert_failed_ids(state.new_failed_ids)
        Clock.objects.filter(pk=1).update(
            last_timestamp=state.clock.last_timestamp,
            last_account_timestamp=state.clock.last_account_timestamp,
            last_transfer_timestamp=state.clock.last_transfer_timestamp,
        )


def _insert_accounts(new_accounts: list[state_machine.AccountState]) -> None:
    """The batch's new accounts, in bulk."""
    if not new_accounts:
        return
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(
                id=u128_to_hex(account.id),
                debits_pending=u128_to_hex(account.debits_pending),
                debits_posted=u128_to_hex(account.debits_posted),
                credits_pending=u128_to_hex(account.credits_pending),
                credits_posted=u128_to_hex(account.credits_posted),
                user_data_128=u128_to_hex(account.user_data_128),
                user_data_64=_u64_to_hex(account.user_data_64),
                user_data_32=account.user_data_32,
                ledger=account.ledger,
                code=account.code,
                flags=account.flags,
                timestamp=account.timestamp,
            )
            for account in new_accounts
        ],
        batch_size=500,
    )


def _update_changed(
    changed_accounts: list[state_machine.AccountState],
    changed_transfers: list[state_machine.TransferState],
) -> None:
    """Balances and flags of the accounts the batch moved; status and expiry of the pending
    transfers it resolved."""
    table = LedgerAccount._meta.db_table
    with connection.cursor() as cursor:
        if changed_accounts:
            cursor.executemany(
                f"UPDATE {table} SET debits_pending = %s, debits_posted = %s, "
                "credits_pending = %s, credits_posted = %s, flags = %s WHERE id = %s",
                [
                    (
                        u128_to_hex(account.debits_pending),
                        u128_to_hex(account.debits_posted),
                        u128_to_hex(account.credits_pending),
                        u128_to_hex(account.credits_posted),
                        account.flags,
                        u128_to_hex(account.id),
                    )
                    for account in changed_accounts
                ],
            )
        if changed_transfers:
            cursor.executemany(
                f"UPDATE {LedgerTransfer._meta.db_table} "
                "SET pending_status = %s, expires_at = %s WHERE id = %s",
                [
                    (transfer.pending_status, transfer.expires_at, u128_to_hex(transfer.id))
                    for transfer in changed_transfers
                ],
            )


def _insert_transfers(new_transfers: list[state_machine.TransferState]) -> None:
    """The batch's new transfers, in bulk."""
    if not new_transfers:
        return
    LedgerTransfer.objects.bulk_create(
        [
            LedgerTransfer(
                id=u128_to_hex(transfer.id),
                debit_account_id=u128_to_hex(transfer.debit_account_id),
                credit_account_id=u128_to_hex(transfer.credit_account_id),
                amount=u128_to_hex(transfer.amount),
                pending_id=u128_to_hex(transfer.pending_id),
                user_data_128=u128_to_hex(transfer.user_data_128),
                user_data_64=_u64_to_hex(transfer.user_data_64),
                user_data_32=transfer.user_data_32,
                timeout=transfer.timeout,
                ledger=transfer.ledger,
                code=transfer.code,
                flags=transfer.flags,
                timestamp=transfer.timestamp,
                pending_status=transfer.pending_status,
                expires_at=transfer.expires_at,
            )
            for transfer in new_transfers
        ],
        batch_size=500,
    )


def _insert_snapshots(snapshots: list[state_machine.Snapshot]) -> None:
    """Balance snapshots of history accounts, one per transfer that moved them."""
    if not snapshots:
        return
    AccountBalanceSnapshot.objects.bulk_create(
        [
            AccountBalanceSnapshot(
                account_id=u128_to_hex(snapshot.account_id),
                timestamp=snapshot.timestamp,
                debits_pending=u128_to_hex(snapshot.debits_pending),
                debits_posted=u128_to_hex(snapshot.debits_posted),
                credits_pending=u128_to_hex(snapshot.credits_pending),
                credits_posted=u128_to_hex(snapshot.credits_posted),
            )
            for snapshot in snapshots
        ],
        batch_size=500,
    )


def _insert_failed_ids(new_failed_ids: dict[int, int]) -> None:
    """Ids of transfers that failed for good: a retry with one is refused as already failed."""
    if not new_failed_ids:
        return
    FailedTransferId.objects.bulk_create(
        [
            FailedTransferId(id=u128_to_hex(transfer_id), status=int(status))
            for transfer_id, status in new_failed_ids.items()
        ],
        batch_size=500,
        ignore_conflicts=True,
    )


def _show_due_expiries(accounts: dict[int, state_machine.AccountState]) -> None:
    """Reads show pending transfers past their timeout as expired, as the server does once
    its expiry pulse ran (within milliseconds), though only the next write records it.
    Resolved pending transfers leave the expires_at index, so this reads only live ones."""
    if not accounts:
        return
    rows = LedgerTransfer.objects.filter(
        pending_status=PendingStatus.PENDING, expires_at__lte=time.time_ns()
    ).values_list(*TRANSFER_COLUMNS)
    due = [_transfer_state(row) for row in rows]
    if due:
        state_machine.expired_as_read(accounts, due)


def _validate_ids(ids: Iterable[int]) -> None:
    for value in ids:
        if value < 0 or value > state_machine.U128_MAX:
            raise IntegerOverflowError(f"id=={value} does not fit in 128 bits")


def _account_filter_valid(account_filter: AccountFilter) -> bool:
    """TigerBeetle answers an invalid filter with an empty result, not an error."""
    known = int(
        AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS | AccountFilterFlags.REVERSED
    )
    return (
        account_filter.account_id not in (0, state_machine.U128_MAX)
        and _timestamp_range_valid(account_filter)
        and bool(account_filter.flags & (AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS))
        and not int(account_filter.flags) & ~known
    )


def _timestamp_range_valid(read_filter: AccountFilter | QueryFilter) -> bool:
    """A bound is 0 (none) or a valid timestamp, below 2^63; min not past max; a limit."""
    timestamp_min, timestamp_max = read_filter.timestamp_min, read_filter.timestamp_max
    return (
        read_filter.limit > 0
        and timestamp_min < state_machine.TIMESTAMP_LIMIT
        and timestamp_max < state_machine.TIMESTAMP_LIMIT
        and (timestamp_max == 0 or timestamp_min <= timestamp_max)
    )


def _query_filter_valid(query_filter: QueryFilter) -> bool:
    known = int(QueryFilterFlags.REVERSED)
    return _timestamp_range_valid(query_filter) and not int(query_filter.flags) & ~known


def _snapshots_in_range(account_hex: str, account_filter: AccountFilter) -> list[AccountBalance]:
    rows = AccountBalanceSnapshot.objects.filter(account_id=account_hex)
    if account_filter.timestamp_min:
        rows = rows.filter(timestamp__gte=account_filter.timestamp_min)
    if account_filter.timestamp_max:
        rows = rows.filter(timestamp__lte=account_filter.timestamp_max)
    reverse = account_filter.flags & AccountFilterFlags.REVERSED
    rows = rows.order_by("-timestamp" if reverse else "timestamp")
    limit = min(account_filter.limit, BATCH_EVENTS_MAX)
    return [_account_balance(row) for row in rows.values_list(*SNAPSHOT_COLUMNS)[:limit]]


def _filter_common(rows: Any, read_filter: AccountFilter | QueryFilter) -> Any:
    if read_filter.user_data_128:
        rows = rows.filter(user_data_128=u128_to_hex(read_filter.user_data_128))
    if read_filter.user_data_64:
        rows = rows.filter(user_data_64=_u64_to_hex(read_filter.user_data_64))
    if read_filter.user_data_32:
        rows = rows.filter(user_data_32=read_filter.user_data_32)
    if read_filter.code:
        rows = rows.filter(code=read_filter.code)
    if read_filter.timestamp_min:
        rows = rows.filter(timestamp__gte=read_filter.timestamp_min)
    if read_filter.timestamp_max:
        rows = rows.filter(timestamp__lte=read_filter.timestamp_max)
    return rows


def _filter_query(rows: Any, query_filter: QueryFilter) -> Any:
    rows = _filter_common(rows, query_filter)
    if query_filter.ledger:
        rows = rows.filter(ledger=query_filter.ledger)
    reverse = query_filter.flags & QueryFilterFlags.REVERSED
    return rows.order_by("-timestamp" if reverse else "timestamp")
