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

S = CreateTransferStatus
A = CreateAccountStatus


@dataclass
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


@dataclass
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


@dataclass
class Snapshot:
    account_id: int
    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


@dataclass
class ClockState:
    last_timestamp: int
    last_account_timestamp: int
    last_transfer_timestamp: int


@dataclass
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
            event, AccountFlags.IMPORTED, imported_batch, batch_timestamp, statuses=A
        )
        if status is None:
            status, found = _create_account(state, journal, event, base + index)
            if status in (A.CREATED, A.EXISTS):
                timestamps[index] = found
        return status

    statuses = run_chains(
        [int(e.flags) for e in events],
        AccountFlags.LINKED,
        execute,
        journal,
        A.CREATED,
        A.LINKED_EVENT_FAILED,
        A.LINKED_EVENT_CHAIN_OPEN,
    )
    return list(zip(statuses, timestamps, strict=True))


def _batch_checks(
    event: Account | Transfer,
    imported_flag: int,
    imported_batch: bool,
    batch_timestamp: int,
    *,
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
    state: BatchState, journal: Journal, a: Account, timestamp_event: int
) -> tuple[int, int]:
    """(status, timestamp of the created or existing account)."""
    flags = int(a.flags)
    imported = bool(flags & AccountFlags.IMPORTED)
    if flags & ~ACCOUNT_FLAGS_KNOWN:
        return A.RESERVED_FLAG, 0
    if a.id == 0:
        return A.ID_MUST_NOT_BE_ZERO, 0
    if a.id == U128_MAX:
        return A.ID_MUST_NOT_BE_INT_MAX, 0
    existing = state.accounts.get(a.id)
    if existing is not None:
        return _account_exists(a, existing), existing.timestamp
    refused = _new_account_checks(a, flags)
    if refused is not None:
        return refused, 0
    if imported and (
        a.timestamp <= state.clock.last_account_timestamp or a.timestamp in state.foreign_timestamps
    ):
        return A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, 0
    timestamp = a.timestamp if imported else timestamp_event
    journal.touch_account(a.id)
    state.accounts[a.id] = AccountState(
        id=a.id,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
        user_data_128=a.user_data_128,
        user_data_64=a.user_data_64,
        user_data_32=a.user_data_32,
        ledger=a.ledger,
        code=a.code,
        flags=flags,  # `linked` included: the server keeps it
        timestamp=timestamp,
        persisted=False,
    )
    state.clock.last_account_timestamp = max(state.clock.last_account_timestamp, timestamp)
    state.clock.last_timestamp = max(state.clock.last_timestamp, timestamp)
    return A.CREATED, timestamp


def _new_account_checks(a: Account, flags: int) -> int | None:
    """A new account's own fields, in the server's order (None: they pass)."""
    if flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
        flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    ):
        return A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if a.debits_pending:
        return A.DEBITS_PENDING_MUST_BE_ZERO
    if a.debits_posted:
        return A.DEBITS_POSTED_MUST_BE_ZERO
    if a.credits_pending:
        return A.CREDITS_PENDING_MUST_BE_ZERO
    if a.credits_posted:
        return A.CREDITS_POSTED_MUST_BE_ZERO
    if a.ledger == 0:
        return A.LEDGER_MUST_NOT_BE_ZERO
    if a.code == 0:
        return A.CODE_MUST_NOT_BE_ZERO
    return None


def _account_exists(a: Account, e: AccountState) -> int:
    """All flags compare, `linked` and `closed` included, as the server compares them."""
    if int(a.flags) != e.flags:
        return A.EXISTS_WITH_DIFFERENT_FLAGS
    if a.user_data_128 != e.user_data_128:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if a.user_data_64 != e.user_data_64:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if a.user_data_32 != e.user_data_32:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if a.ledger != e.ledger:
        return A.EXISTS_WITH_DIFFERENT_LEDGER
    if a.code != e.code:
        return A.EXISTS_WITH_DIFFERENT_CODE
    return A.EXISTS


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
            event, TransferFlags.IMPORTED, imported_batch, batch_timestamp, statuses=S
        )
        if status is None:
            status, found = _create_transfer(state, journal, event, base + index)
            if status in (S.CREATED, S.EXISTS):
                timestamps[index] = found
        if status in TRANSIENT_TRANSFER_FAILURES:
            state.failed_ids[event.id] = status
            state.new_failed_ids[event.id] = status
        return status

    statuses = run_chains(
        [int(e.flags) for e in events],
        TransferFlags.LINKED,
        execute,
        journal,
        S.CREATED,
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_CHAIN_OPEN,
    )
    return list(zip(statuses, timestamps, strict=True))


def _create_transfer(
    state: BatchState, journal: Journal, t: Transfer, timestamp_event: int
) -> tuple[int, int]:
    """(status, timestamp of the created or existing transfer)."""
    flags = int(t.flags)
    if flags & ~TRANSFER_FLAGS_KNOWN:
        return S.RESERVED_FLAG, 0
    if t.id == 0:
        return S.ID_MUST_NOT_BE_ZERO, 0
    if t.id == U128_MAX:
        return S.ID_MUST_NOT_BE_INT_MAX, 0
    existing = state.transfers.get(t.id)
    if existing is not None:
        return _transfer_exists(state, t, existing), existing.timestamp
    if t.id in state.failed_ids:
        return S.ID_ALREADY_FAILED, 0
    if flags & _POST_OR_VOID:
        return _post_or_void(state, journal, t, flags, timestamp_event)
    return _single_or_pending(state, journal, t, flags, timestamp_event)


def _single_or_pending(
    state: BatchState, journal: Journal, t: Transfer, flags: int, timestamp_event: int
) -> tuple[int, int]:
    """A single-phase or pending transfer: the server's checks in its order, then the move."""
    pending = bool(flags & TransferFlags.PENDING)
    imported = bool(flags & TransferFlags.IMPORTED)
    refused = _single_field_checks(t, flags, pending=pending)
    if refused is None:
        refused = _single_account_checks(state, t, imported=imported)
    if refused is not None:
        return refused, 0
    dr = state.accounts[t.debit_account_id]
    cr = state.accounts[t.credit_account_id]
    timestamp = t.timestamp if imported else timestamp_event
    amount = _balanced_amount(t, flags, dr, cr)
    refused = _single_limit_checks(t, dr, cr, amount, pending=pending, timestamp=timestamp)
    if refused is not None:
        return refused, 0
    _apply_single(state, journal, t, flags, amount=amount, timestamp=timestamp)
    return S.CREATED, timestamp


def _single_field_checks(t: Transfer, flags: int, *, pending: bool) -> int | None:
    """The transfer's own fields, before any account is read (None: they pass)."""
    if t.debit_account_id == 0:
        return S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.debit_account_id == U128_MAX:
        return S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if t.credit_account_id == 0:
        return S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.credit_account_id == U128_MAX:
        return S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if t.debit_account_id == t.credit_account_id:
        return S.ACCOUNTS_MUST_BE_DIFFERENT
    if t.pending_id != 0:
        return S.PENDING_ID_MUST_BE_ZERO
    if not pending and t.timeout != 0:
        return S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if flags & (TransferFlags.CLOSING_DEBIT | TransferFlags.CLOSING_CREDIT) and not pending:
        return S.CLOSING_TRANSFER_MUST_BE_PENDING
    if t.ledger == 0:
        return S.LEDGER_MUST_NOT_BE_ZERO
    if t.code == 0:
        return S.CODE_MUST_NOT_BE_ZERO
    return None


def _single_account_checks(state: BatchState, t: Transfer, *, imported: bool) -> int | None:
    """Both accounts exist on the transfer's ledger, an imported transfer postdates them, and
    neither is closed (None: they pass)."""
    dr = state.accounts.get(t.debit_account_id)
    if dr is None:
        return S.DEBIT_ACCOUNT_NOT_FOUND
    cr = state.accounts.get(t.credit_account_id)
    if cr is None:
        return S.CREDIT_ACCOUNT_NOT_FOUND
    if dr.ledger != cr.ledger:
        return S.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
    if t.ledger != dr.ledger:
        return S.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
    if imported:
        refused = _imported_regresses(state, t) or _imported_single_checks(t, dr, cr)
        if refused:
            return refused
    if dr.flags & AccountFlags.CLOSED:
        return S.DEBIT_ACCOUNT_ALREADY_CLOSED
    if cr.flags & AccountFlags.CLOSED:
        return S.CREDIT_ACCOUNT_ALREADY_CLOSED
    return None


def _balanced_amount(t: Transfer, flags: int, dr: AccountState, cr: AccountState) -> int:
    """The amount that moves: a balancing transfer's amount is an upper limit."""
    amount = t.amount
    if flags & TransferFlags.BALANCING_DEBIT:
        amount = min(amount, max(0, dr.credits_posted - dr.debits_pending - dr.debits_posted))
    if flags & TransferFlags.BALANCING_CREDIT:
        amount = min(amount, max(0, cr.debits_posted - cr.credits_pending - cr.credits_posted))
    return amount


def _single_limit_checks(
    t: Transfer,
    dr: AccountState,
    cr: AccountState,
    amount: int,
    *,
    pending: bool,
    timestamp: int,
) -> int | None:
    """Overflows, the timeout's range and the accounts' balance limits (None: they pass)."""
    refused = _overflow(dr, cr, amount, pending=pending)
    if refused:
        return refused
    if timestamp + t.timeout * NS_PER_S >= TIMESTAMP_LIMIT:
        return S.OVERFLOWS_TIMEOUT
    if dr.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
        dr.debits_pending + dr.debits_posted + amount > dr.credits_posted
    ):
        return S.EXCEEDS_CREDITS
    if cr.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
        cr.credits_pending + cr.credits_posted + amount > cr.debits_posted
    ):
        return S.EXCEEDS_DEBITS
    return None


def _apply_single(
    state: BatchState, journal: Journal, t: Transfer, flags: int, *, amount: int, timestamp: int
) -> None:
    """Move the amount (pending or posted), close what a closing transfer closes, record it."""
    pending = bool(flags & TransferFlags.PENDING)
    journal.touch_account(t.debit_account_id)
    journal.touch_account(t.credit_account_id)
    dr, cr = state.accounts[t.debit_account_id], state.accounts[t.credit_account_id]
    if pending:
        dr.debits_pending += amount
        cr.credits_pending += amount
    else:
        dr.debits_posted += amount
        cr.credits_posted += amount
    if flags & TransferFlags.CLOSING_DEBIT:
        dr.flags |= AccountFlags.CLOSED
    if flags & TransferFlags.CLOSING_CREDIT:
        cr.flags |= AccountFlags.CLOSED
    dr.dirty = cr.dirty = True
    _record(
        state,
        journal,
        TransferState(
            id=t.id,
            debit_account_id=dr.id,
            credit_account_id=cr.id,
            amount=amount,
            pending_id=0,
            user_data_128=t.user_data_128,
            user_data_64=t.user_data_64,
            user_data_32=t.user_data_32,
            timeout=t.timeout,
            ledger=t.ledger,
            code=t.code,
            flags=flags,  # `linked` included: the server keeps it
            timestamp=timestamp,
            pending_status=PendingStatus.PENDING if pending else PendingStatus.NONE,
            expires_at=timestamp + t.timeout * NS_PER_S if pending and t.timeout else None,
            persisted=False,
        ),
        (dr, cr),
    )


def _overflow(dr: AccountState, cr: AccountState, amount: int, *, pending: bool) -> int | None:
    """The server's order: pending sums (pending transfers only), then posted sums (for
    every transfer), then pending plus posted."""
    if pending:
        if dr.debits_pending + amount > U128_MAX:
            return S.OVERFLOWS_DEBITS_PENDING
        if cr.credits_pending + amount > U128_MAX:
            return S.OVERFLOWS_CREDITS_PENDING
    if dr.debits_posted + amount > U128_MAX:
        return S.OVERFLOWS_DEBITS_POSTED
    if cr.credits_posted + amount > U128_MAX:
        return S.OVERFLOWS_CREDITS_POSTED
    if dr.debits_pending + dr.debits_posted + amount > U128_MAX:
        return S.OVERFLOWS_DEBITS
    if cr.credits_pending + cr.credits_posted + amount > U128_MAX:
        return S.OVERFLOWS_CREDITS
    return None


def _post_or_void(
    state: BatchState, journal: Journal, t: Transfer, flags: int, timestamp_event: int
) -> tuple[int, int]:
    """Posting or voiding a pending transfer: the server's checks in its order, then the move."""
    posting = bool(flags & TransferFlags.POST_PENDING_TRANSFER)
    refused = _post_or_void_field_checks(t, flags)
    if refused is not None:
        return refused, 0
    p = state.transfers.get(t.pending_id)
    if p is None:
        return S.PENDING_TRANSFER_NOT_FOUND, 0
    refused = _pending_transfer_checks(t, p)
    if refused is not None:
        return refused, 0
    if posting:
        amount = p.amount if t.amount == U128_MAX else t.amount
    else:
        amount = p.amount if t.amount == 0 else t.amount
    refused = _pending_amount_and_state_checks(
        p, amount, posting=posting, timestamp_event=timestamp_event
    )
    if refused is not None:
        return refused, 0
    imported = bool(flags & TransferFlags.IMPORTED)
    if imported:
        refused = _imported_regresses(state, t)
        if refused:
            return refused, 0
    timestamp = t.timestamp if imported else timestamp_event
    dr = state.accounts[p.debit_account_id]
    cr = state.accounts[p.credit_account_id]
    # The only movement a closed account allows is voiding a pending transfer.
    if dr.flags & AccountFlags.CLOSED and posting:
        return S.DEBIT_ACCOUNT_ALREADY_CLOSED, 0
    if cr.flags & AccountFlags.CLOSED and posting:
        return S.CREDIT_ACCOUNT_ALREADY_CLOSED, 0
    _apply_post_or_void(state, journal, t, p, flags, amount=amount, timestamp=timestamp)
    return S.CREATED, timestamp


def _post_or_void_field_checks(t: Transfer, flags: int) -> int | None:
    """The request's own fields, before the pending transfer is read (None: they pass)."""
    if flags & TransferFlags.POST_PENDING_TRANSFER and flags & TransferFlags.VOID_PENDING_TRANSFER:
        return S.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & (TransferFlags.PENDING | _BALANCING_OR_CLOSING):
        return S.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if t.pending_id == 0:
        return S.PENDING_ID_MUST_NOT_BE_ZERO
    if t.pending_id == U128_MAX:
        return S.PENDING_ID_MUST_NOT_BE_INT_MAX
    if t.pending_id == t.id:
        return S.PENDING_ID_MUST_BE_DIFFERENT
    if t.timeout != 0:
        return S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    return None


def _pending_transfer_checks(t: Transfer, p: TransferState) -> int | None:
    """The pending transfer is one, and the request's non-zero fields match it (None: so)."""
    if not p.flags & TransferFlags.PENDING:
        return S.PENDING_TRANSFER_NOT_PENDING
    if t.debit_account_id and t.debit_account_id != p.debit_account_id:
        return S.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id and t.credit_account_id != p.credit_account_id:
        return S.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if t.ledger and t.ledger != p.ledger:
        return S.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
    if t.code and t.code != p.code:
        return S.PENDING_TRANSFER_HAS_DIFFERENT_CODE
    return None


def _pending_amount_and_state_checks(
    p: TransferState, amount: int, *, posting: bool, timestamp_event: int
) -> int | None:
    """The amount fits the pending one (a void takes it whole), and the pending transfer is
    neither resolved nor expired (None: so)."""
    if amount > p.amount:
        return S.EXCEEDS_PENDING_TRANSFER_AMOUNT
    if not posting and amount < p.amount:
        return S.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    if p.pending_status == PendingStatus.POSTED:
        return S.PENDING_TRANSFER_ALREADY_POSTED
    if p.pending_status == PendingStatus.VOIDED:
        return S.PENDING_TRANSFER_ALREADY_VOIDED
    if p.pending_status == PendingStatus.EXPIRED or (
        p.expires_at is not None and p.expires_at <= timestamp_event
    ):
        return S.PENDING_TRANSFER_EXPIRED
    return None


def _apply_post_or_void(
    state: BatchState,
    journal: Journal,
    t: Transfer,
    p: TransferState,
    flags: int,
    *,
    amount: int,
    timestamp: int,
) -> None:
    """Release the pending amount, post `amount` or reopen what a voided closing transfer
    closed, resolve the pending transfer and record the new one."""
    posting = bool(flags & TransferFlags.POST_PENDING_TRANSFER)
    journal.touch_account(p.debit_account_id)
    journal.touch_account(p.credit_account_id)
    journal.touch_transfer(p.id)
    dr, cr = state.accounts[p.debit_account_id], state.accounts[p.credit_account_id]
    p = state.transfers[p.id]
    dr.debits_pending -= p.amount
    cr.credits_pending -= p.amount
    if posting:
        dr.debits_posted += amount
        cr.credits_posted += amount
    else:  # voiding the closing transfer reopens what it closed
        if p.flags & TransferFlags.CLOSING_DEBIT:
            dr.flags &= ~int(AccountFlags.CLOSED)
        if p.flags & TransferFlags.CLOSING_CREDIT:
            cr.flags &= ~int(AccountFlags.CLOSED)
    dr.dirty = cr.dirty = True
    p.pending_status = PendingStatus.POSTED if posting else PendingStatus.VOIDED
    p.expires_at = None  # resolved: no longer due, and out of the expiry index
    p.status_dirty = True
    _record(
        state,
        journal,
        TransferState(
            id=t.id,
            debit_account_id=p.debit_account_id,
            credit_account_id=p.credit_account_id,
            amount=amount,
            pending_id=p.id,
            user_data_128=t.user_data_128 or p.user_data_128,
            user_data_64=t.user_data_64 or p.user_data_64,
            user_data_32=t.user_data_32 or p.user_data_32,
            timeout=0,
            ledger=p.ledger,
            code=p.code,
            flags=flags,
            timestamp=timestamp,
            persisted=False,
        ),
        (dr, cr),
    )


def _imported_regresses(state: BatchState, t: Transfer) -> int | None:
    if (
        t.timestamp <= state.clock.last_transfer_timestamp
        or t.timestamp in state.foreign_timestamps
    ):
        return S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
    return None


def _imported_single_checks(t: Transfer, dr: AccountState, cr: AccountState) -> int | None:
    if dr.timestamp >= t.timestamp:
        return S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT
    if cr.timestamp >= t.timestamp:
        return S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
    if t.timeout != 0:
        return S.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO
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
                    account.id,
                    transfer.timestamp,
                    account.debits_pending,
                    account.debits_posted,
                    account.credits_pending,
                    account.credits_posted,
                )
            )


def _transfer_exists(state: BatchState, t: Transfer, e: TransferState) -> int:
    """The server's idempotency check: flags first (all of them, `linked` included), then the
    fields in its order; a post/void compares against its pending transfer."""
    if int(t.flags) != e.flags:
        return S.EXISTS_WITH_DIFFERENT_FLAGS
    if t.pending_id != e.pending_id:
        return S.EXISTS_WITH_DIFFERENT_PENDING_ID
    if t.timeout != e.timeout:
        return S.EXISTS_WITH_DIFFERENT_TIMEOUT
    if e.flags & _POST_OR_VOID:
        return _post_or_void_exists(t, e, state.transfers[e.pending_id])
    return _single_exists(t, e)


def _single_exists(t: Transfer, e: TransferState) -> int:
    """A single-phase or pending transfer's fields, in the server's order."""
    if t.debit_account_id != e.debit_account_id:
        return S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id != e.credit_account_id:
        return S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if e.flags & (TransferFlags.BALANCING_DEBIT | TransferFlags.BALANCING_CREDIT):
        # The request's amount is an upper limit: any limit at or above what moved is it.
        if t.amount < e.amount:
            return S.EXISTS_WITH_DIFFERENT_AMOUNT
    elif t.amount != e.amount:
        return S.EXISTS_WITH_DIFFERENT_AMOUNT
    if t.user_data_128 != e.user_data_128:
        return S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if t.user_data_64 != e.user_data_64:
        return S.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if t.user_data_32 != e.user_data_32:
        return S.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.ledger != e.ledger:
        return S.EXISTS_WITH_DIFFERENT_LEDGER
    if t.code != e.code:
        return S.EXISTS_WITH_DIFFERENT_CODE
    return S.EXISTS


def _post_or_void_exists(t: Transfer, e: TransferState, p: TransferState) -> int:
    """Fields left zero in the request stand for the pending transfer's."""
    if t.debit_account_id and t.debit_account_id != e.debit_account_id:
        return S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id and t.credit_account_id != e.credit_account_id:
        return S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    whole = 0 if e.flags & TransferFlags.VOID_PENDING_TRANSFER else U128_MAX
    if (e.amount != p.amount) if t.amount == whole else (t.amount != e.amount):
        return S.EXISTS_WITH_DIFFERENT_AMOUNT
    for name, status in (
        ("user_data_128", S.EXISTS_WITH_DIFFERENT_USER_DATA_128),
        ("user_data_64", S.EXISTS_WITH_DIFFERENT_USER_DATA_64),
        ("user_data_32", S.EXISTS_WITH_DIFFERENT_USER_DATA_32),
    ):
        requested = getattr(t, name) or getattr(p, name)
        if requested != getattr(e, name):
            return status
    if t.ledger and t.ledger != e.ledger:
        return S.EXISTS_WITH_DIFFERENT_LEDGER
    if t.code and t.code != e.code:
        return S.EXISTS_WITH_DIFFERENT_CODE
    return S.EXISTS


def expire(state: BatchState, due: Sequence[TransferState]) -> None:
    """Release the pending amounts of transfers whose timeout passed, oldest first."""
    for pending in sorted(due, key=lambda p: (p.expires_at or 0, p.timestamp)):
        dr = state.accounts[pending.debit_account_id]
        cr = state.accounts[pending.credit_account_id]
        dr.debits_pending -= pending.amount
        cr.credits_pending -= pending.amount
        dr.dirty = cr.dirty = True
        pending.pending_status = PendingStatus.EXPIRED
        pending.expires_at = None
        pending.status_dirty = True
        if pending.flags & TransferFlags.CLOSING_DEBIT:
            dr.flags &= ~int(AccountFlags.CLOSED)
        if pending.flags & TransferFlags.CLOSING_CREDIT:
            cr.flags &= ~int(AccountFlags.CLOSED)


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
