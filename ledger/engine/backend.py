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
from ledger.engine import state_machine as sm
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


def _h64(value: int) -> str:
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


def _account_state(row: tuple[Any, ...]) -> sm.AccountState:
    return sm.AccountState(
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


def _transfer_state(row: tuple[Any, ...]) -> sm.TransferState:
    return sm.TransferState(
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
            ids = list({a.id for a in accounts})
            self._load_accounts(state, ids)
            if accounts[0].flags & AccountFlags.IMPORTED:
                state.foreign_timestamps = self._existing_timestamps(
                    LedgerTransfer, [a.timestamp for a in accounts]
                )
            outcomes = sm.create_accounts(state, accounts)
            assert_one_result_per_event(events=accounts, results=outcomes)
            self._persist(state)
        return [
            CreateAccountResult(timestamp=ts, status=CreateAccountStatus(status))
            for status, ts in outcomes
        ]

    @_unavailable_on_database_error
    def create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult]:
        _validate(transfers, CTransfer)
        if not transfers:
            return []
        with transaction.atomic():
            state = self._begin()
            self._expire_due(state)
            referenced = list({t.id for t in transfers} | {t.pending_id for t in transfers})
            self._load_transfers(state, [i for i in referenced if i])
            account_ids = {t.debit_account_id for t in transfers} | {
                t.credit_account_id for t in transfers
            }
            for pending in state.transfers.values():
                account_ids |= {pending.debit_account_id, pending.credit_account_id}
            self._load_accounts(state, [i for i in account_ids if i])
            self._load_failed(state, [t.id for t in transfers])
            if transfers[0].flags & TransferFlags.IMPORTED:
                state.foreign_timestamps = self._existing_timestamps(
                    LedgerAccount, [t.timestamp for t in transfers]
                )
            outcomes = sm.create_transfers(state, transfers)
            assert_one_result_per_event(events=transfers, results=outcomes)
            self._persist(state)
        return [
            CreateTransferResult(timestamp=ts, status=CreateTransferStatus(status))
            for status, ts in outcomes
        ]

    # --- point reads ---------------------------------------------------------------------

    @_unavailable_on_database_error
    def lookup_accounts(self, account_ids: list[int]) -> list[Account]:
        _validate_ids(account_ids)
        found: dict[int, sm.AccountState] = {}
        for chunk in _chunks([u128_to_hex(i) for i in set(account_ids)]):
            for row in LedgerAccount.objects.filter(id__in=chunk).values_list(*ACCOUNT_COLUMNS):
                account = _account_state(row)
                found[account.id] = account
        _show_due_expiries(found)
        accounts = [found[i].to_account() for i in account_ids if i in found]
        assert_lookup_answers(ids=account_ids, found=accounts)
        return accounts

    @_unavailable_on_database_error
    def lookup_transfers(self, transfer_ids: list[int]) -> list[Transfer]:
        _validate_ids(transfer_ids)
        found: dict[int, Transfer] = {}
        for chunk in _chunks([u128_to_hex(i) for i in set(transfer_ids)]):
            rows = LedgerTransfer.objects.filter(id__in=chunk).values_list(*TRANSFER_COLUMNS)
            for row in rows:
                transfer = _transfer_state(row).to_transfer()
                found[transfer.id] = transfer
        transfers = [found[i] for i in transfer_ids if i in found]
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
            _transfer_state(r).to_transfer() for r in rows.values_list(*TRANSFER_COLUMNS)[:limit]
        ]

    def begin_create_transfers(
        self, transfers: list[Transfer]
    ) -> Callable[[], list[CreateTransferResult]]:
        """Answered at once: the engine works on the caller's database connection."""
        results = self.create_transfers(transfers)
        return lambda: results

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
        timestamps = [t.timestamp for t in transfers]
        snapshots = {
            ts: (dp, dpo, cp, cpo)
            for ts, dp, dpo, cp, cpo in AccountBalanceSnapshot.objects.filter(
                account_id=account_hex, timestamp__in=timestamps
            ).values_list(
                "timestamp", "debits_pending", "debits_posted", "credits_pending", "credits_posted"
            )
        }
        return [
            AccountBalance(
                debits_pending=hex_to_u128(snapshots[ts][0]),
                debits_posted=hex_to_u128(snapshots[ts][1]),
                credits_pending=hex_to_u128(snapshots[ts][2]),
                credits_posted=hex_to_u128(snapshots[ts][3]),
                timestamp=ts,
            )
            for ts in timestamps
            if ts in snapshots
        ]

    @_unavailable_on_database_error
    def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        CQueryFilter.from_param(query_filter)
        if not _query_filter_valid(query_filter):
            return []
        rows = _filter_query(LedgerAccount.objects.all(), query_filter)
        limit = min(query_filter.limit, BATCH_EVENTS_MAX)
        found = [_account_state(r) for r in rows.values_list(*ACCOUNT_COLUMNS)[:limit]]
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
            _transfer_state(r).to_transfer() for r in rows.values_list(*TRANSFER_COLUMNS)[:limit]
        ]

    def close(self) -> None:
        """Nothing to release: connections belong to Django."""

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _begin() -> sm.BatchState:
        clock = Clock.objects.select_for_update().filter(pk=1).first()
        if clock is None:  # migration 0002 creates it; a flushed database lost it
            Clock.objects.get_or_create(pk=1)
            clock = Clock.objects.select_for_update().get(pk=1)
        return sm.BatchState(
            now_ns=time.time_ns(),
            clock=sm.ClockState(
                last_timestamp=clock.last_timestamp,
                last_account_timestamp=clock.last_account_timestamp,
                last_transfer_timestamp=clock.last_transfer_timestamp,
            ),
        )

    @staticmethod
    def _load_accounts(state: sm.BatchState, ids: Sequence[int]) -> None:
        missing = [u128_to_hex(i) for i in ids if i not in state.accounts]
        for chunk in _chunks(missing):
            for row in LedgerAccount.objects.filter(id__in=chunk).values_list(*ACCOUNT_COLUMNS):
                account = _account_state(row)
                state.accounts[account.id] = account

    @staticmethod
    def _load_transfers(state: sm.BatchState, ids: Sequence[int]) -> None:
        missing = [u128_to_hex(i) for i in ids if i not in state.transfers]
        for chunk in _chunks(missing):
            rows = LedgerTransfer.objects.filter(id__in=chunk).values_list(*TRANSFER_COLUMNS)
            for row in rows:
                transfer = _transfer_state(row)
                state.transfers[transfer.id] = transfer

    @staticmethod
    def _load_failed(state: sm.BatchState, ids: Sequence[int]) -> None:
        for chunk in _chunks([u128_to_hex(i) for i in set(ids)]):
            for failed_id, status in FailedTransferId.objects.filter(id__in=chunk).values_list(
                "id", "status"
            ):
                state.failed_ids[hex_to_u128(failed_id)] = status

    @staticmethod
    def _existing_timestamps(model: Any, timestamps: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks([t for t in set(timestamps) if 0 < t < sm.TIMESTAMP_LIMIT]):
            found |= set(
                model.objects.filter(timestamp__in=chunk).values_list("timestamp", flat=True)
            )
        return found

    def _expire_due(self, state: sm.BatchState) -> None:
        rows = LedgerTransfer.objects.filter(
            pending_status=PendingStatus.PENDING, expires_at__lte=state.now_ns
        ).values_list(*TRANSFER_COLUMNS)
        due = [_transfer_state(r) for r in rows]
        if not due:
            return
        for pending in due:
            state.transfers[pending.id] = pending
        self._load_accounts(
            state,
            [p.debit_account_id for p in due] + [p.credit_account_id for p in due],
        )
        sm.expire(state, due)

    @staticmethod
    def _persist(state: sm.BatchState) -> None:
        """Write what the batch changed: new and changed accounts and transfers, balance
        snapshots, failed ids, the clock."""
        new_accounts = [a for a in state.accounts.values() if not a.persisted]
        changed_accounts = [a for a in state.accounts.values() if a.persisted and a.dirty]
        sm.assert_balance_limits(new_accounts + changed_accounts)
        new_transfers = [t for t in state.transfers.values() if not t.persisted]
        changed_transfers = [t for t in state.transfers.values() if t.persisted and t.status_dirty]
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


def _insert_accounts(new_accounts: list[sm.AccountState]) -> None:
    """The batch's new accounts, in bulk."""
    if not new_accounts:
        return
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(
                id=u128_to_hex(a.id),
                debits_pending=u128_to_hex(a.debits_pending),
                debits_posted=u128_to_hex(a.debits_posted),
                credits_pending=u128_to_hex(a.credits_pending),
                credits_posted=u128_to_hex(a.credits_posted),
                user_data_128=u128_to_hex(a.user_data_128),
                user_data_64=_h64(a.user_data_64),
                user_data_32=a.user_data_32,
                ledger=a.ledger,
                code=a.code,
                flags=a.flags,
                timestamp=a.timestamp,
            )
            for a in new_accounts
        ],
        batch_size=500,
    )


def _update_changed(
    changed_accounts: list[sm.AccountState], changed_transfers: list[sm.TransferState]
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
                        u128_to_hex(a.debits_pending),
                        u128_to_hex(a.debits_posted),
                        u128_to_hex(a.credits_pending),
                        u128_to_hex(a.credits_posted),
                        a.flags,
                        u128_to_hex(a.id),
                    )
                    for a in changed_accounts
                ],
            )
        if changed_transfers:
            cursor.executemany(
                f"UPDATE {LedgerTransfer._meta.db_table} "
                "SET pending_status = %s, expires_at = %s WHERE id = %s",
                [(t.pending_status, t.expires_at, u128_to_hex(t.id)) for t in changed_transfers],
            )


def _insert_transfers(new_transfers: list[sm.TransferState]) -> None:
    """The batch's new transfers, in bulk."""
    if not new_transfers:
        return
    LedgerTransfer.objects.bulk_create(
        [
            LedgerTransfer(
                id=u128_to_hex(t.id),
                debit_account_id=u128_to_hex(t.debit_account_id),
                credit_account_id=u128_to_hex(t.credit_account_id),
                amount=u128_to_hex(t.amount),
                pending_id=u128_to_hex(t.pending_id),
                user_data_128=u128_to_hex(t.user_data_128),
                user_data_64=_h64(t.user_data_64),
                user_data_32=t.user_data_32,
                timeout=t.timeout,
                ledger=t.ledger,
                code=t.code,
                flags=t.flags,
                timestamp=t.timestamp,
                pending_status=t.pending_status,
                expires_at=t.expires_at,
            )
            for t in new_transfers
        ],
        batch_size=500,
    )


def _insert_snapshots(snapshots: list[sm.Snapshot]) -> None:
    """Balance snapshots of history accounts, one per transfer that moved them."""
    if not snapshots:
        return
    AccountBalanceSnapshot.objects.bulk_create(
        [
            AccountBalanceSnapshot(
                account_id=u128_to_hex(s.account_id),
                timestamp=s.timestamp,
                debits_pending=u128_to_hex(s.debits_pending),
                debits_posted=u128_to_hex(s.debits_posted),
                credits_pending=u128_to_hex(s.credits_pending),
                credits_posted=u128_to_hex(s.credits_posted),
            )
            for s in snapshots
        ],
        batch_size=500,
    )


def _insert_failed_ids(new_failed_ids: dict[int, int]) -> None:
    """Ids of transfers that failed for good: a retry with one is refused as already failed."""
    if not new_failed_ids:
        return
    FailedTransferId.objects.bulk_create(
        [
            FailedTransferId(id=u128_to_hex(i), status=int(status))
            for i, status in new_failed_ids.items()
        ],
        batch_size=500,
        ignore_conflicts=True,
    )


def _show_due_expiries(accounts: dict[int, sm.AccountState]) -> None:
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
        sm.expired_as_read(accounts, due)


def _validate_ids(ids: Iterable[int]) -> None:
    for value in ids:
        if value < 0 or value > sm.U128_MAX:
            raise IntegerOverflowError(f"id=={value} does not fit in 128 bits")


def _account_filter_valid(f: AccountFilter) -> bool:
    """TigerBeetle answers an invalid filter with an empty result, not an error."""
    known = int(
        AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS | AccountFilterFlags.REVERSED
    )
    return (
        f.account_id not in (0, sm.U128_MAX)
        and _timestamp_range_valid(f)
        and bool(f.flags & (AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS))
        and not int(f.flags) & ~known
    )


def _timestamp_range_valid(f: AccountFilter | QueryFilter) -> bool:
    """A bound is 0 (none) or a valid timestamp, below 2^63; min not past max; a limit."""
    return (
        f.limit > 0
        and f.timestamp_min < sm.TIMESTAMP_LIMIT
        and f.timestamp_max < sm.TIMESTAMP_LIMIT
        and (f.timestamp_max == 0 or f.timestamp_min <= f.timestamp_max)
    )


def _query_filter_valid(f: QueryFilter) -> bool:
    return _timestamp_range_valid(f) and not int(f.flags) & ~int(QueryFilterFlags.REVERSED)


def _snapshots_in_range(account_hex: str, f: AccountFilter) -> list[AccountBalance]:
    rows = AccountBalanceSnapshot.objects.filter(account_id=account_hex)
    if f.timestamp_min:
        rows = rows.filter(timestamp__gte=f.timestamp_min)
    if f.timestamp_max:
        rows = rows.filter(timestamp__lte=f.timestamp_max)
    rows = rows.order_by("-timestamp" if f.flags & AccountFilterFlags.REVERSED else "timestamp")
    limit = min(f.limit, BATCH_EVENTS_MAX)
    return [
        AccountBalance(
            debits_pending=hex_to_u128(dp),
            debits_posted=hex_to_u128(dpo),
            credits_pending=hex_to_u128(cp),
            credits_posted=hex_to_u128(cpo),
            timestamp=ts,
        )
        for ts, dp, dpo, cp, cpo in rows.values_list(
            "timestamp", "debits_pending", "debits_posted", "credits_pending", "credits_posted"
        )[:limit]
    ]


def _filter_common(rows: Any, f: AccountFilter | QueryFilter) -> Any:
    if f.user_data_128:
        rows = rows.filter(user_data_128=u128_to_hex(f.user_data_128))
    if f.user_data_64:
        rows = rows.filter(user_data_64=_h64(f.user_data_64))
    if f.user_data_32:
        rows = rows.filter(user_data_32=f.user_data_32)
    if f.code:
        rows = rows.filter(code=f.code)
    if f.timestamp_min:
        rows = rows.filter(timestamp__gte=f.timestamp_min)
    if f.timestamp_max:
        rows = rows.filter(timestamp__lte=f.timestamp_max)
    return rows


def _filter_query(rows: Any, f: QueryFilter) -> Any:
    rows = _filter_common(rows, f)
    if f.ledger:
        rows = rows.filter(ledger=f.ledger)
    return rows.order_by("-timestamp" if f.flags & QueryFilterFlags.REVERSED else "timestamp")
