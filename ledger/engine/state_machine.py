"""TigerBeetle's create_accounts / create_transfers semantics, on in-memory state.

The backend loads every account and transfer a batch refers to, runs the batch here, and
writes back what changed, all inside one database transaction. Checks follow the server's
own code, src/state_machine.zig of TigerBeetle 0.17.9 (commit 52ad553), in its order: the
first applicable result wins, and tests/ledger/test_differential.py holds the engine to the
real server's answers. A linked chain succeeds or fails as a whole; the journal undoes the
in-memory effects of a failed chain's earlier events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from tigerbeetle import (
    Account,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Transfer,
    TransferFlags,
)

from ledger.engine.models import PendingStatus

U128_MAX = 2**128 - 1
NS_PER_S = 1_000_000_000
TIMESTAMP_LIMIT = 2**63

ACCOUNT_FLAGS_KNOWN = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
    | AccountFlags.IMPORTED
    | AccountFlags.CLOSED
)
TRANSFER_FLAGS_KNOWN = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
    | TransferFlags.CLOSING_DEBIT
    | TransferFlags.CLOSING_CREDIT
    | TransferFlags.IMPORTED
)
_POST_OR_VOID = TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER
_BALANCING_OR_CLOSING = (
    TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
    | TransferFlags.CLOSING_DEBIT
    | TransferFlags.CLOSING_CREDIT
)
TRANSIENT_TRANSFER_FAILURES = frozenset(
    {
        CreateTransferStatus.DEBIT_ACCOUNT_NOT_FOUND,
        CreateTransferStatus.CREDIT_ACCOUNT_NOT_FOUND,
        CreateTransferStatus.PENDING_TRANSFER_NOT_FOUND,
        CreateTransferStatus.EXCEEDS_CREDITS,
        CreateTransferStatus.EXCEEDS_DEBITS,
        CreateTransferStatus.DEBIT_ACCOUNT_ALREADY_CLOSED,
        CreateTransferStatus.CREDIT_ACCOUNT_ALREADY_CLOSED,
    }
)


@dataclass(kw_only=True)
class AccountState:
    """A mutable account row; `persisted` rows are updated, others inserted."""

    id: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    ledger: int
    code: int
    flags: int
    timestamp: int
    persisted: bool = True
    dirty: bool = False

    def to_account(self) -> Account:
        return Account(
            id=self.id,
            debits_pending=self.debits_pending,
            debits_posted=self.debits_posted,
            credits_pending=self.credits_pending,
            credits_posted=self.credits_posted,
            user_data_128=self.user_data_128,
            user_data_64=self.user_data_64,
            user_data_32=self.user_data_32,
            ledger=self.ledger,
            code=self.code,
            flags=AccountFlags(self.flags),
            timestamp=self.timestamp,
        )


@dataclass(kw_only=True)
class TransferState:
    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending_id: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    timeout: int
    ledger: int
    code: int
    flags: int
    timestamp: int
    pending_status: int = PendingStatus.NONE
    expires_at: int | None = None
    persisted: bool = True
    status_dirty: bool = False

    def to_transfer(self) -> Transfer:
        return Transfer(
            id=self.id,
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount=self.amount,
            pending_id=self.pending_id,
            user_data_128=self.user_data_128,
            user_data_64=self.user_data_64,
            user_data_32=self.user_data_32,
            timeout=self.timeout,
            ledger=self.ledger,
            code=self.code,
            flags=TransferFlags(self.flags),
            timestamp=self.timestamp,
        )


@dataclass(kw_only=True)
class Snapshot:
    account_id: int
    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


@dataclass(kw_only=True)
class ClockState:
    last_timestamp: int
    last_account_timestamp: int
    last_transfer_timestamp: int


@dataclass(kw_only=True)
class BatchState:
    """Everything a batch may read or change, loaded up front by the backend."""

    now_ns: int
    clock: ClockState
    accounts: dict[int, AccountState] = field(default_factory=dict)
    transfers: dict[int, TransferState] = field(default_factory=dict)
    failed_ids: dict[int, int] = field(default_factory=dict)
    new_failed_ids: dict[int, int] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)
    # Timestamps of the other object kind, for imported events' "must not regress" rule.
    foreign_timestamps: set[int] = field(default_factory=set)


class Journal:
    """Undo log for one linked chain: copies of accounts before their first change, and the
    transfers/accounts the chain created."""

    def __init__(self, state: BatchState) -> None:
        self._state = state
        self.active = False
        self._accounts: dict[int, AccountState | None] = {}
        self._transfers: dict[int, TransferState | None] = {}
        self._snapshot_len = 0
        self._clock = replace(state.clock)

    def begin(self) -> None:
        self.active = True
        self._accounts.clear()
        self._transfers.clear()
        self._snapshot_len = len(self._state.snapshots)
        self._clock = replace(self._state.clock)

    def touch_account(self, account_id: int) -> None:
        if self.active and account_id not in self._accounts:
            current = self._state.accounts.get(account_id)
            self._accounts[account_id] = replace(current) if current else None

    def touch_transfer(self, transfer_id: int) -> None:
        if self.active and transfer_id not in self._transfers:
            current = self._state.transfers.get(transfer_id)
            self._transfers[transfer_id] = replace(current) if current else None

    def rollback(self) -> None:
        for account_id, saved in self._accounts.items():
            if saved is None:
                self._state.accounts.pop(account_id, None)
            else:
                self._state.accounts[account_id] = saved
        for transfer_id, saved_transfer in self._transfers.items():
            if saved_transfer is None:
                self._state.transfers.pop(transfer_id, None)
            else:
                self._state.transfers[transfer_id] = saved_transfer
        del self._state.snapshots[self._snapshot_len :]
        self._state.clock = self._clock
        self.active = False

    def commit(self) -> None:
        self.active = False


def run_chains(
    flags_of: Sequence[int],
    *,
    linked_flag: int,
    execute: Callable[[int], int],
    journal: Journal,
    created: int,
    chain_failed: int,
    chain_open: int,
) -> list[int]:
    """Run events in order, as TigerBeetle's execute_create does: a linked chain is
    all-or-nothing; the event that breaks it carries its own result, the chain's other events
    `linked_event_failed`, and a batch's last event, if linked, `linked_event_chain_open`
    (the events before it in that chain still run, and may fail first)."""
    count = len(flags_of)
    results: list[int] = [0] * count
    chain_start: int | None = None
    broken = False
    for index in range(count):
        linked = bool(flags_of[index] & linked_flag)
        if linked and chain_start is None:
            chain_start = index
            journal.begin()
        if linked and index == count - 1:
            result = chain_open
        elif broken:
            result = chain_failed
        else:
            result = execute(index)
        if result != created and chain_start is not None and not broken:
            broken = True
            journal.rollback()
            for earlier in range(chain_start, index):
                results[earlier] = chain_failed
        results[index] = result
        if chain_start is not None and (not linked or result == chain_open):
            if not broken:
                journal.commit()
            chain_start = None
            broken = False
    return results


def _timestamps(state: BatchState, count: int) -> int:
    """First of `count` consecutive, strictly increasing timestamps for this batch."""
    base = max(state.now_ns, state.clock.last_timestamp + 1)
    state.clock.last_timestamp = base + count - 1
    return base


def assert_balance_limits(accounts: Iterable[AccountState]) -> None:
    """The invariant every transfer check protects, asserted after a batch is applied: an
    account with `debits_must_not_exceed_credits` never has debits (pending and posted) above
    its posted credits, and the mirror for `credits_must_not_exceed_debits`. A failure is a
    bug in this engine, never a user error: the batch's transaction rolls back."""
    for account in accounts:
        if account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS:
            assert account.debits_pending + account.debits_posted <= account.credits_posted, (
                f"account {account.id:#x}: debits exceed credits"
            )
        if account.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS:
            assert account.credits_pending + account.credits_posted <= account.debits_posted, (
                f"account {account.id:#x}: credits exceed debits"
            )


# --- accounts -------------------------------------------------------------------------------


def create_accounts(state: BatchState, events: Sequence[Account]) -> list[tuple[int, int]]:
    """(status, timestamp) per event: the object's timestamp when created or existing, else
    the event's own timestamp in the batch (as the server answers)."""
    journal = Journal(state)
    imported_batch = bool(events and events[0].flags & AccountFlags.IMPORTED)
    base = _timestamps(state, len(events))
    batch_timestamp = base + len(events) - 1
    timestamps = [base + index for index in range(len(events))]

    def execute(index: int) -> int:
        event = events[index]
        status = _batch_checks(
            event,
            imported_flag=AccountFlags.IMPORTED,
            imported_batch=imported_batch,
            batch_timestamp=batch_timestamp,
            statuses=CreateAccountStatus,
        )
        if status is None:
            status, found = _create_account(state, journal, event, base + index)
            if status in (CreateAccountStatus.CREATED, CreateAccountStatus.EXISTS):
                timestamps[index] = found
        return status

    statuses = run_chains(
        [int(event.flags) for event in events],
        linked_flag=AccountFlags.LINKED,
        execute=execute,
        journal=journal,
        created=CreateAccountStatus.CREATED,
        chain_failed=CreateAccountStatus.LINKED_EVENT_FAILED,
        chain_open=CreateAccountStatus.LINKED_EVENT_CHAIN_OPEN,
    )
    return list(zip(statuses, timestamps, strict=True))


def _batch_checks(
    event: Account | Transfer,
    *,
    imported_flag: int,
    imported_batch: bool,
    batch_timestamp: int,
    statuses: type[CreateAccountStatus] | type[CreateTransferStatus],
) -> int | None:
    """The checks TigerBeetle makes before dispatching an event: imported or not like the
    batch's first event, and the timestamp that goes with it (an imported one must be
    earlier than the batch's own last timestamp)."""
    imported = bool(int(event.flags) & imported_flag)
    if imported_batch != imported:
        if imported:
            return statuses.IMPORTED_EVENT_NOT_EXPECTED
        return statuses.IMPORTED_EVENT_EXPECTED
    if imported:
        if not 0 < event.timestamp < TIMESTAMP_LIMIT:
            return statuses.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE
        if event.timestamp >= batch_timestamp:
            return statuses.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE
    elif event.timestamp != 0:
        return statuses.TIMESTAMP_MUST_BE_ZERO
    return None


def _create_account(
    state: BatchState, journal: Journal, account: Account, timestamp_event: int
) -> tuple[int, int]:
    """(status, timestamp of the created or existing account)."""
    flags = int(account.flags)
    imported = bool(flags & AccountFlags.IMPORTED)
    if flags & ~ACCOUNT_FLAGS_KNOWN:
        return CreateAccountStatus.RESERVED_FLAG, 0
    if account.id == 0:
        return CreateAccountStatus.ID_MUST_NOT_BE_ZERO, 0
    if account.id == U128_MAX:
        return CreateAccountStatus.ID_MUST_NOT_BE_INT_MAX, 0
    existing = state.accounts.get(account.id)
    if existing is not None:
        return _account_exists(account, existing), existing.timestamp
    refused = _new_account_checks(account, flags)
    if refused is not None:
        return refused, 0
    if imported and (
        account.timestamp <= state.clock.last_account_timestamp
        or account.timestamp in state.foreign_timestamps
    ):
        return CreateAccountStatus.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, 0
    timestamp = account.timestamp if imported else timestamp_event
    journal.touch_account(account.id)
    state.accounts[account.id] = AccountState(
        id=account.id,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
        user_data_128=account.user_data_128,
        user_data_64=account.user_data_64,
        user_data_32=account.user_data_32,
        ledger=account.ledger,
        code=account.code,
        flags=flags,  # `linked` included: the server keeps it
        timestamp=timestamp,
        persisted=False,
    )
    state.clock.last_account_timestamp = max(state.clock.last_account_timestamp, timestamp)
    state.clock.last_timestamp = max(state.clock.last_timestamp, timestamp)
    return CreateAccountStatus.CREATED, timestamp


def _new_account_checks(account: Account, flags: int) -> int | None:
    """A new account's own fields, in the server's order (None: they pass)."""
    if flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
        flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    ):
        return CreateAccountStatus.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if account.debits_pending:
        return CreateAccountStatus.DEBITS_PENDING_MUST_BE_ZERO
    if account.debits_posted:
        return CreateAccountStatus.DEBITS_POSTED_MUST_BE_ZERO
    if account.credits_pending:
        return CreateAccountStatus.CREDITS_PENDING_MUST_BE_ZERO
    if account.credits_posted:
        return CreateAccountStatus.CREDITS_POSTED_MUST_BE_ZERO
    if account.ledger == 0:
        return CreateAccountStatus.LEDGER_MUST_NOT_BE_ZERO
    if account.code == 0:
        return CreateAccountStatus.CODE_MUST_NOT_BE_ZERO
    return None


def _account_exists(account: Account, existing: AccountState) -> int:
    """All flags compare, `linked` and `closed` included, as the server compares them."""
    if int(account.flags) != existing.flags:
        return CreateAccountStatus.EXISTS_WITH_DIFFERENT_FLAGS
    if account.user_data_128 != existing.user_data_128:
        return CreateAccountStatus.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if account.user_data_64 != existing.user_data_64:
        return CreateAccountStatus.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if account.user_data_32 != existing.user_data_32:
        return CreateAccountStatus.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if account.ledger != existing.ledger:
        return CreateAccountStatus.EXISTS_WITH_DIFFERENT_LEDGER
    if account.code != existing.code:
        return CreateAccountStatus.EXISTS_WITH_DIFFERENT_CODE
    return CreateAccountStatus.EXISTS


# --- transfers ------------------------------------------------------------------------------


def create_transfers(state: BatchState, events: Sequence[Transfer]) -> list[tuple[int, int]]:
    """(status, timestamp) per event, as create_accounts."""
    journal = Journal(state)
    imported_batch = bool(events and events[0].flags & TransferFlags.IMPORTED)
    base = _timestamps(state, len(events))
    batch_timestamp = base + len(events) - 1
    timestamps = [base + index for index in range(len(events))]

    def execute(index: int) -> int:
        event = events[index]
        status = _batch_checks(
            event,
            imported_flag=TransferFlags.IMPORTED,
            imported_batch=imported_batch,
            batch_timestamp=batch_timestamp,
            statuses=CreateTransferStatus,
        )
        if status is None:
            status, found = _create_transfer(state, journal, event, base + index)
            if status in (CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS):
                timestamps[index] = found
        if status in TRANSIENT_TRANSFER_FAILURES:
            state.failed_ids[event.id] = status
            state.new_failed_ids[event.id] = status
        return status

    statuses = run_chains(
        [int(event.flags) for event in events],
        linked_flag=TransferFlags.LINKED,
        execute=execute,
        journal=journal,
        created=CreateTransferStatus.CREATED,
        chain_failed=CreateTransferStatus.LINKED_EVENT_FAILED,
        chain_open=CreateTransferStatus.LINKED_EVENT_CHAIN_OPEN,
    )
    return list(zip(statuses, timestamps, strict=True))


def _create_transfer(
    state: BatchState, journal: Journal, transfer: Transfer, timestamp_event: int
) -> tuple[int, int]:
    """(status, timestamp of the created or existing transfer)."""
    flags = int(transfer.flags)
    if flags & ~TRANSFER_FLAGS_KNOWN:
        return CreateTransferStatus.RESERVED_FLAG, 0
    if transfer.id == 0:
        return CreateTransferStatus.ID_MUST_NOT_BE_ZERO, 0
    if transfer.id == U128_MAX:
        return CreateTransferStatus.ID_MUST_NOT_BE_INT_MAX, 0
    existing = state.transfers.get(transfer.id)
    if existing is not None:
        return _transfer_exists(state, transfer, existing), existing.timestamp
    if transfer.id in state.failed_ids:
        return CreateTransferStatus.ID_ALREADY_FAILED, 0
    if flags & _POST_OR_VOID:
        return _post_or_void(state, journal, transfer, flags=flags, timestamp_event=timestamp_event)
    return _single_or_pending(
        state, journal, transfer, flags=flags, timestamp_event=timestamp_event
    )


def _single_or_pending(
    state: BatchState, journal: Journal, transfer: Transfer, *, flags: int, timestamp_event: int
) -> tuple[int, int]:
    """A single-phase or pending transfer: the server's checks in its order, then the move."""
    pending = bool(flags & TransferFlags.PENDING)
    imported = bool(flags & TransferFlags.IMPORTED)
    refused = _single_field_checks(transfer, flags, pending=pending)
    if refused is None:
        refused = _single_account_checks(state, transfer, imported=imported)
    if refused is not None:
        return refused, 0
    debit_account = state.accounts[transfer.debit_account_id]
    credit_account = state.accounts[transfer.credit_account_id]
    timestamp = transfer.timestamp if imported else timestamp_event
    amount = _balanced_amount(
        transfer, flags, debit_account=debit_account, credit_account=credit_account
    )
    refused = _single_limit_checks(
        transfer,
        debit_account=debit_account,
        credit_account=credit_account,
        amount=amount,
        pending=pending,
        timestamp=timestamp,
    )
    if refused is not None:
        return refused, 0
    _apply_single(state, journal, transfer, flags, amount=amount, timestamp=timestamp)
    return CreateTransferStatus.CREATED, timestamp


def _single_field_checks(transfer: Transfer, flags: int, *, pending: bool) -> int | None:
    """The transfer's own fields, before any account is read (None: they pass)."""
    if transfer.debit_account_id == 0:
        return CreateTransferStatus.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if transfer.debit_account_id == U128_MAX:
        return CreateTransferStatus.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if transfer.credit_account_id == 0:
        return CreateTransferStatus.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if transfer.credit_account_id == U128_MAX:
        return CreateTransferStatus.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if transfer.debit_account_id == transfer.credit_account_id:
        return CreateTransferStatus.ACCOUNTS_MUST_BE_DIFFERENT
    if transfer.pending_id != 0:
        return CreateTransferStatus.PENDING_ID_MUST_BE_ZERO
    if not pending and transfer.timeout != 0:
        return CreateTransferStatus.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if flags & (TransferFlags.CLOSING_DEBIT | TransferFlags.CLOSING_CREDIT) and not pending:
        return CreateTransferStatus.CLOSING_TRANSFER_MUST_BE_PENDING
    if transfer.ledger == 0:
        return CreateTransferStatus.LEDGER_MUST_NOT_BE_ZERO
    if transfer.code == 0:
        return CreateTransferStatus.CODE_MUST_NOT_BE_ZERO
    return None


def _single_account_checks(state: BatchState, transfer: Transfer, *, imported: bool) -> int | None:
    """Both accounts exist on the transfer's ledger, an imported transfer postdates them, and
    neither is closed (None: they pass)."""
    debit_account = state.accounts.get(transfer.debit_account_id)
    if debit_account is None:
        return CreateTransferStatus.DEBIT_ACCOUNT_NOT_FOUND
    credit_account = state.accounts.get(transfer.credit_account_id)
    if credit_account is None:
        return CreateTransferStatus.CREDIT_ACCOUNT_NOT_FOUND
    if debit_account.ledger != credit_account.ledger:
        return CreateTransferStatus.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
    if transfer.ledger != debit_account.ledger:
        return CreateTransferStatus.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
    if imported:
        refused = _imported_regresses(state, transfer) or _imported_single_checks(
            transfer, debit_account=debit_account, credit_account=credit_account
        )
        if refused:
            return refused
    if debit_account.flags & AccountFlags.CLOSED:
        return CreateTransferStatus.DEBIT_ACCOUNT_ALREADY_CLOSED
    if credit_account.flags & AccountFlags.CLOSED:
        return CreateTransferStatus.CREDIT_ACCOUNT_ALREADY_CLOSED
    return None


def _balanced_amount(
    transfer: Transfer, flags: int, *, debit_account: AccountState, credit_account: AccountState
) -> int:
    """The amount that moves: a balancing transfer's amount is an upper limit."""
    amount = transfer.amount
    if flags & TransferFlags.BALANCING_DEBIT:
        debits = debit_account.debits_pending + debit_account.debits_posted
        amount = min(amount, max(0, debit_account.credits_posted - debits))
    if flags & TransferFlags.BALANCING_CREDIT:
        credits = credit_account.credits_pending + credit_account.credits_posted
        amount = min(amount, max(0, credit_account.debits_posted - credits))
    return amount


def _single_limit_checks(
    transfer: Transfer,
    *,
    debit_account: AccountState,
    credit_account: AccountState,
    amount: int,
    pending: bool,
    timestamp: int,
) -> int | None:
    """Overflows, the timeout's range and the accounts' balance limits (None: they pass)."""
    refused = _overflow(
        debit_account=debit_account, credit_account=credit_account, amount=amount, pending=pending
    )
    if refused:
        return refused
    if timestamp + transfer.timeout * NS_PER_S >= TIMESTAMP_LIMIT:
        return CreateTransferStatus.OVERFLOWS_TIMEOUT
    if debit_account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
        debit_account.debits_pending + debit_account.debits_posted + amount
        > debit_account.credits_posted
    ):
        return CreateTransferStatus.EXCEEDS_CREDITS
    if credit_account.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
        credit_account.credits_pending + credit_account.credits_posted + amount
        > credit_account.debits_posted
    ):
        return CreateTransferStatus.EXCEEDS_DEBITS
    return None


def _apply_single(
    state: BatchState,
    journal: Journal,
    transfer: Transfer,
    flags: int,
    *,
    amount: int,
    timestamp: int,
) -> None:
    """Move the amount (pending or posted), close what a closing transfer closes, record it."""
    pending = bool(flags & TransferFlags.PENDING)
    journal.touch_account(transfer.debit_account_id)
    journal.touch_account(transfer.credit_account_id)
    debit_account = state.accounts[transfer.debit_account_id]
    credit_account = state.accounts[transfer.credit_account_id]
    if pending:
        debit_account.debits_pending += amount
        credit_account.credits_pending += amount
    else:
        debit_account.debits_posted += amount
        credit_account.credits_posted += amount
    if flags & TransferFlags.CLOSING_DEBIT:
        debit_account.flags |= AccountFlags.CLOSED
    if flags & TransferFlags.CLOSING_CREDIT:
        credit_account.flags |= AccountFlags.CLOSED
    debit_account.dirty = credit_account.dirty = True
    _record(
        state,
        journal,
        TransferState(
            id=transfer.id,
            debit_account_id=debit_account.id,
            credit_account_id=credit_account.id,
            amount=amount,
            pending_id=0,
            user_data_128=transfer.user_data_128,
            user_data_64=transfer.user_data_64,
            user_data_32=transfer.user_data_32,
            timeout=transfer.timeout,
            ledger=transfer.ledger,
            code=transfer.code,
            flags=flags,  # `linked` included: the server keeps it
            timestamp=timestamp,
            pending_status=PendingStatus.PENDING if pending else PendingStatus.NONE,
            expires_at=(
                timestamp + transfer.timeout * NS_PER_S if pending and transfer.timeout else None
            ),
            persisted=False,
        ),
        (debit_account, credit_account),
    )


def _overflow(
    *, debit_account: AccountState, credit_account: AccountState, amount: int, pending: bool
) -> int | None:
    """The server's order: pending sums (pending transfers only), then posted sums (for
    every transfer), then pending plus posted."""
    if pending:
        if debit_account.debits_pending + amount > U128_MAX:
            return CreateTransferStatus.OVERFLOWS_DEBITS_PENDING
        if credit_account.credits_pending + amount > U128_MAX:
            return CreateTransferStatus.OVERFLOWS_CREDITS_PENDING
    if debit_account.debits_posted + amount > U128_MAX:
        return CreateTransferStatus.OVERFLOWS_DEBITS_POSTED
    if credit_account.credits_posted + amount > U128_MAX:
        return CreateTransferStatus.OVERFLOWS_CREDITS_POSTED
    if debit_account.debits_pending + debit_account.debits_posted + amount > U128_MAX:
        return CreateTransferStatus.OVERFLOWS_DEBITS
    if credit_account.credits_pending + credit_account.credits_posted + amount > U128_MAX:
        return CreateTransferStatus.OVERFLOWS_CREDITS
    return None


def _post_or_void(
    state: BatchState, journal: Journal, transfer: Transfer, *, flags: int, timestamp_event: int
) -> tuple[int, int]:
    """Posting or voiding a pending transfer: the server's checks in its order, then the move."""
    posting = bool(flags & TransferFlags.POST_PENDING_TRANSFER)
    refused = _post_or_void_field_checks(transfer, flags)
    if refused is not None:
        return refused, 0
    pending_transfer = state.transfers.get(transfer.pending_id)
    if pending_transfer is None:
        return CreateTransferStatus.PENDING_TRANSFER_NOT_FOUND, 0
    refused = _pending_transfer_checks(transfer, pending_transfer)
    if refused is not None:
        return refused, 0
    if posting:
        amount = pending_transfer.amount if transfer.amount == U128_MAX else transfer.amount
    else:
        amount = pending_transfer.amount if transfer.amount == 0 else transfer.amount
    refused = _pending_amount_and_state_checks(
        pending_transfer, amount, posting=posting, timestamp_event=timestamp_event
    )
    if refused is not None:
        return refused, 0
    imported = bool(flags & TransferFlags.IMPORTED)
    if imported:
        refused = _imported_regresses(state, transfer)
        if refused:
            return refused, 0
    timestamp = transfer.timestamp if imported else timestamp_event
    debit_account = state.accounts[pending_transfer.debit_account_id]
    credit_account = state.accounts[pending_transfer.credit_account_id]
    # The only movement a closed account allows is voiding a pending transfer.
    if debit_account.flags & AccountFlags.CLOSED and posting:
        return CreateTransferStatus.DEBIT_ACCOUNT_ALREADY_CLOSED, 0
    if credit_account.flags & AccountFlags.CLOSED and posting:
        return CreateTransferStatus.CREDIT_ACCOUNT_ALREADY_CLOSED, 0
    _apply_post_or_void(
        state, journal, transfer, pending_transfer, flags, amount=amount, timestamp=timestamp
    )
    return CreateTransferStatus.CREATED, timestamp


def _post_or_void_field_checks(transfer: Transfer, flags: int) -> int | None:
    """The request's own fields, before the pending transfer is read (None: they pass)."""
    if flags & TransferFlags.POST_PENDING_TRANSFER and flags & TransferFlags.VOID_PENDING_TRANSFER:
        return CreateTransferStatus.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & (TransferFlags.PENDING | _BALANCING_OR_CLOSING):
        return CreateTransferStatus.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if transfer.pending_id == 0:
        return CreateTransferStatus.PENDING_ID_MUST_NOT_BE_ZERO
    if transfer.pending_id == U128_MAX:
        return CreateTransferStatus.PENDING_ID_MUST_NOT_BE_INT_MAX
    if transfer.pending_id == transfer.id:
        return CreateTransferStatus.PENDING_ID_MUST_BE_DIFFERENT
    if transfer.timeout != 0:
        return CreateTransferStatus.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    return None


def _pending_transfer_checks(transfer: Transfer, pending_transfer: TransferState) -> int | None:
    """The pending transfer is one, and the request's non-zero fields match it (None: so)."""
    if not pending_transfer.flags & TransferFlags.PENDING:
        return CreateTransferStatus.PENDING_TRANSFER_NOT_PENDING
    if transfer.debit_account_id and transfer.debit_account_id != pending_transfer.debit_account_id:
        return CreateTransferStatus.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if (
        transfer.credit_account_id
        and transfer.credit_account_id != pending_transfer.credit_account_id
    ):
        return CreateTransferStatus.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if transfer.ledger and transfer.ledger != pending_transfer.ledger:
        return CreateTransferStatus.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
    if transfer.code and transfer.code != pending_transfer.code:
        return CreateTransferStatus.PENDING_TRANSFER_HAS_DIFFERENT_CODE
    return None


def _pending_amount_and_state_checks(
    pending_transfer: TransferState, amount: int, *, posting: bool, timestamp_event: int
) -> int | None:
    """The amount fits the pending one (a void takes it whole), and the pending transfer is
    neither resolved nor expired (None: so)."""
    if amount > pending_transfer.amount:
        return CreateTransferStatus.EXCEEDS_PENDING_TRANSFER_AMOUNT
    if not posting and amount < pending_transfer.amount:
        return CreateTransferStatus.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    if pending_transfer.pending_status == PendingStatus.POSTED:
        return CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED
    if pending_transfer.pending_status == PendingStatus.VOIDED:
        return CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED
    if pending_transfer.pending_status == PendingStatus.EXPIRED or (
        pending_transfer.expires_at is not None and pending_transfer.expires_at <= timestamp_event
    ):
        return CreateTransferStatus.PENDING_TRANSFER_EXPIRED
    return None


def _apply_post_or_void(
    state: BatchState,
    journal: Journal,
    transfer: Transfer,
    pending_transfer: TransferState,
    flags: int,
    *,
    amount: int,
    timestamp: int,
) -> None:
    """Release the pending amount, post `amount` or reopen what a voided closing transfer
    closed, resolve the pending transfer and record the new one."""
    posting = bool(flags & TransferFlags.POST_PENDING_TRANSFER)
    journal.touch_account(pending_transfer.debit_account_id)
    journal.touch_account(pending_transfer.credit_account_id)
    journal.touch_transfer(pending_transfer.id)
    debit_account = state.accounts[pending_transfer.debit_account_id]
    credit_account = state.accounts[pending_transfer.credit_account_id]
    pending_transfer = state.transfers[pending_transfer.id]
    debit_account.debits_pending -= pending_transfer.amount
    credit_account.credits_pending -= pending_transfer.amount
    if posting:
        debit_account.debits_posted += amount
        credit_account.credits_posted += amount
    else:  # voiding the closing transfer reopens what it closed
        if pending_transfer.flags & TransferFlags.CLOSING_DEBIT:
            debit_account.flags &= ~int(AccountFlags.CLOSED)
        if pending_transfer.flags & TransferFlags.CLOSING_CREDIT:
            credit_account.flags &= ~int(AccountFlags.CLOSED)
    debit_account.dirty = credit_account.dirty = True
    pending_transfer.pending_status = PendingStatus.POSTED if posting else PendingStatus.VOIDED
    pending_transfer.expires_at = None  # resolved: no longer due, and out of the expiry index
    pending_transfer.status_dirty = True
    _record(
        state,
        journal,
        TransferState(
            id=transfer.id,
            debit_account_id=pending_transfer.debit_account_id,
            credit_account_id=pending_transfer.credit_account_id,
            amount=amount,
            pending_id=pending_transfer.id,
            user_data_128=transfer.user_data_128 or pending_transfer.user_data_128,
            user_data_64=transfer.user_data_64 or pending_transfer.user_data_64,
            user_data_32=transfer.user_data_32 or pending_transfer.user_data_32,
            timeout=0,
            ledger=pending_transfer.ledger,
            code=pending_transfer.code,
            flags=flags,
            timestamp=timestamp,
            persisted=False,
        ),
        (debit_account, credit_account),
    )


def _imported_regresses(state: BatchState, transfer: Transfer) -> int | None:
    if (
        transfer.timestamp <= state.clock.last_transfer_timestamp
        or transfer.timestamp in state.foreign_timestamps
    ):
        return CreateTransferStatus.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
    return None


def _imported_single_checks(
    transfer: Transfer, *, debit_account: AccountState, credit_account: AccountState
) -> int | None:
    if debit_account.timestamp >= transfer.timestamp:
        return CreateTransferStatus.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT
    if credit_account.timestamp >= transfer.timestamp:
        return CreateTransferStatus.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
    if transfer.timeout != 0:
        return CreateTransferStatus.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO
    return None


def _record(
    state: BatchState,
    journal: Journal,
    transfer: TransferState,
    accounts: tuple[AccountState, AccountState],
) -> None:
    journal.touch_transfer(transfer.id)
    state.transfers[transfer.id] = transfer
    state.clock.last_transfer_timestamp = max(
        state.clock.last_transfer_timestamp, transfer.timestamp
    )
    state.clock.last_timestamp = max(state.clock.last_timestamp, transfer.timestamp)
    for account in accounts:
        if account.flags & AccountFlags.HISTORY:
            state.snapshots.append(
                Snapshot(
                    account_id=account.id,
                    timestamp=transfer.timestamp,
                    debits_pending=account.debits_pending,
                    debits_posted=account.debits_posted,
                    credits_pending=account.credits_pending,
                    credits_posted=account.credits_posted,
                )
            )


def _transfer_exists(state: BatchState, transfer: Transfer, existing: TransferState) -> int:
    """The server's idempotency check: flags first (all of them, `linked` included), then the
    fields in its order; a post/void compares against its pending transfer."""
    if int(transfer.flags) != existing.flags:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_FLAGS
    if transfer.pending_id != existing.pending_id:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_PENDING_ID
    if transfer.timeout != existing.timeout:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_TIMEOUT
    if existing.flags & _POST_OR_VOID:
        return _post_or_void_exists(
            transfer, existing=existing, pending_transfer=state.transfers[existing.pending_id]
        )
    return _single_exists(transfer, existing)


def _single_exists(transfer: Transfer, existing: TransferState) -> int:
    """A single-phase or pending transfer's fields, in the server's order."""
    if transfer.debit_account_id != existing.debit_account_id:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if transfer.credit_account_id != existing.credit_account_id:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if existing.flags & (TransferFlags.BALANCING_DEBIT | TransferFlags.BALANCING_CREDIT):
        # The request's amount is an upper limit: any limit at or above what moved is it.
        if transfer.amount < existing.amount:
            return CreateTransferStatus.EXISTS_WITH_DIFFERENT_AMOUNT
    elif transfer.amount != existing.amount:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_AMOUNT
    if transfer.user_data_128 != existing.user_data_128:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if transfer.user_data_64 != existing.user_data_64:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if transfer.user_data_32 != existing.user_data_32:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if transfer.ledger != existing.ledger:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_LEDGER
    if transfer.code != existing.code:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_CODE
    return CreateTransferStatus.EXISTS


def _post_or_void_exists(
    transfer: Transfer, *, existing: TransferState, pending_transfer: TransferState
) -> int:
    """Fields left zero in the request stand for the pending transfer's."""
    if transfer.debit_account_id and transfer.debit_account_id != existing.debit_account_id:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if transfer.credit_account_id and transfer.credit_account_id != existing.credit_account_id:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    whole = 0 if existing.flags & TransferFlags.VOID_PENDING_TRANSFER else U128_MAX
    if transfer.amount == whole:  # asked for the pending amount, whatever it is
        amount_differs = existing.amount != pending_transfer.amount
    else:
        amount_differs = transfer.amount != existing.amount
    if amount_differs:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_AMOUNT
    for name, status in (
        ("user_data_128", CreateTransferStatus.EXISTS_WITH_DIFFERENT_USER_DATA_128),
        ("user_data_64", CreateTransferStatus.EXISTS_WITH_DIFFERENT_USER_DATA_64),
        ("user_data_32", CreateTransferStatus.EXISTS_WITH_DIFFERENT_USER_DATA_32),
    ):
        requested = getattr(transfer, name) or getattr(pending_transfer, name)
        if requested != getattr(existing, name):
            return status
    if transfer.ledger and transfer.ledger != existing.ledger:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_LEDGER
    if transfer.code and transfer.code != existing.code:
        return CreateTransferStatus.EXISTS_WITH_DIFFERENT_CODE
    return CreateTransferStatus.EXISTS


def expire(state: BatchState, due: Sequence[TransferState]) -> None:
    """Release the pending amounts of transfers whose timeout passed, oldest first."""
    for pending in sorted(
        due, key=lambda due_transfer: (due_transfer.expires_at or 0, due_transfer.timestamp)
    ):
        debit_account = state.accounts[pending.debit_account_id]
        credit_account = state.accounts[pending.credit_account_id]
        debit_account.debits_pending -= pending.amount
        credit_account.credits_pending -= pending.amount
        debit_account.dirty = credit_account.dirty = True
        pending.pending_status = PendingStatus.EXPIRED
        pending.expires_at = None
        pending.status_dirty = True
        if pending.flags & TransferFlags.CLOSING_DEBIT:
            debit_account.flags &= ~int(AccountFlags.CLOSED)
        if pending.flags & TransferFlags.CLOSING_CREDIT:
            credit_account.flags &= ~int(AccountFlags.CLOSED)


def expired_as_read(accounts: dict[int, AccountState], due: Sequence[TransferState]) -> None:
    """What a read shows of pending transfers past their timeout that no write has expired
    yet: their amounts released and their closing flags undone, as the server shows them
    once its expiry pulse ran. Only the given accounts change; nothing is written."""
    for pending in due:
        debit = accounts.get(pending.debit_account_id)
        if debit is not None:
            debit.debits_pending -= pending.amount
            if pending.flags & TransferFlags.CLOSING_DEBIT:
                debit.flags &= ~int(AccountFlags.CLOSED)
        credit = accounts.get(pending.credit_account_id)
        if credit is not None:
            credit.credits_pending -= pending.amount
            if pending.flags & TransferFlags.CLOSING_CREDIT:
                credit.flags &= ~int(AccountFlags.CLOSED)
