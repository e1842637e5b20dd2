"""The TigerBeetle store's batches: many credits, debits and hold operations in one
create_transfers request (hold items: `tigerbeetle_batch_holds`).

A batch costs, besides its one create_transfers request: one registry read of its ids (a
resent item answers its original result, as a single write's retry does), the account
set-up of wallets it meets first (their own requests, as before a single write), one
lookup_accounts of its wallets before the write and one after, and one bulk insert of the
registry rows. The two lookups give every item its balance right after it without a read
per item: posted credits and debits only grow, so when a wallet's posted amounts moved
between the two lookups by exactly what the batch posted to it, nothing else landed on the
wallet in between, and its balance after each item is the balance before plus the batch's
items up to it (TigerBeetle applies one request's transfers in order, none between them).
A wallet some other write touched meanwhile has its items' balances read from its history.

All-or-nothing: the items go as one linked chain, so TigerBeetle posts all or none. An id
TigerBeetle already holds (a write whose registry row was lost) would break the chain: it is
answered as its replay, and the chain goes again without it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import connection, transaction
from tigerbeetle import Account, CreateTransferResult, CreateTransferStatus, Transfer, TransferFlags

from domain import errors
from domain.batches import BatchItem, BatchItemKind, BatchOutcome, refused_at
from domain.holds import HoldResult
from domain.ids import WalletKey
from domain.wallets import (
    TransactionKind,
    TransactionRecord,
    TransactionState,
    WalletBalance,
    WalletResult,
    time_of_tb_timestamp,
)
from ledger.backends import LedgerBackend
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.history import balance_at, balances_at, store_call, transfer_timestamps
from ledger.stores.tigerbeetle_answers import (
    answer_not_created,
    check_replay,
    remember_transfer,
)
from ledger.stores.tigerbeetle_batch_holds import BatchHolds, Delta
from ledger.tb_model import LedgerScope, credit_transfer, debit_transfer, wallet_balance
from ledger.wallet_accounts import LIMIT_OVERFLOWS, WalletAccounts, limit_exceeded
from registry import accounts as account_registry
from registry import transfers as transfer_registry
from registry.accounts import RegisteredAccount
from registry.models import WalletTransfer
from registry.movement_fence import MovementFence

# Ids read from the registry per query (SQLite binds at most 32,766 parameters).
_REGISTRY_IDS_PER_QUERY = 4000
_NS_PER_MS = 1_000_000
_TRANSACTION_ID_COLUMN = str(WalletTransfer._meta.get_field("transaction_id").column)


@dataclasses.dataclass
class _Pending:
    """An item to post: where it sits in the batch, its wallet and its transfer."""

    index: int
    item: BatchItem
    registered: RegisteredAccount
    transfer: Transfer
    key: WalletKey  # the item's wallet (a capture's or release's: its hold's)
    delta: Delta  # what it changes on the wallet, if TigerBeetle takes it


class TigerBeetleBatch:
    """One batch of credits, debits and hold operations on a ledger backend (one per
    batch; `balance`: the store's balance read)."""

    def __init__(
        self,
        backend: LedgerBackend,
        *,
        scope: LedgerScope,
        balance: Callable[[WalletKey], WalletBalance],
    ) -> None:
        self._backend = backend
        self._scope = scope
        self._balance = balance
        self._holds: BatchHolds | None = None
        self._fence = MovementFence()  # held by `post`, covered by `_send`

    @property
    def scope(self) -> LedgerScope:
        return self._scope

    @property
    def holds(self) -> BatchHolds:
        assert self._holds is not None, "post() reads the batch's holds first"
        return self._holds

    def post(self, items: Sequence[BatchItem], *, atomic: bool, made_by: str) -> list[BatchOutcome]:
        assert 1 <= len(items) <= BATCH_EVENTS_MAX, "the service bounds a batch"
        outcomes: list[BatchOutcome | None] = [None] * len(items)
        self._holds = BatchHolds(
            self._backend, scope=self._scope, balance=self._balance, items=list(items)
        )
        known = _registered_ids(
            [item.transaction_id for item in items if not item.kind.is_hold_operation]
        )
        for index, item in enumerate(items):
            if item.kind.is_hold_operation:
                outcomes[index] = self.holds.answer_known(index, item)
        replayed = [
            (index, item)
            for index, item in enumerate(items)
            if not item.kind.is_hold_operation and item.transaction_id in known
        ]
        for index, outcome in _replays(self._backend, replayed).items():
            outcomes[index] = outcome
        # The fence from the send (`_send` covers the wallets) until the rows committed.
        with self._fence:
            if atomic:
                self._post_atomic(items, outcomes, made_by=made_by)
            else:
                self._post_independent(self._prepare(items, outcomes), outcomes, made_by=made_by)
        assert all(outcome is not None for outcome in outcomes), "every item answered"
        return [outcome for outcome in outcomes if outcome is not None]

    def _post_atomic(
        self, items: Sequence[BatchItem], outcomes: list[BatchOutcome | None], *, made_by: str
    ) -> None:
        """All or none, with no partial state: the set-up of the wallets the batch meets first
        (registry rows; on the embedded engine, their accounts too) and every row it writes
        are one database transaction, rolled back when the batch is refused. On the real
        server a new wallet's accounts may remain, empty and without a registry row: no
        read finds them, the reconciliation passes over them, and the wallet's first
        credit later takes them up (creating them again answers `exists`). A refused debit
        is then remembered as refused, as a single one is."""
        unavailable: errors.StoreUnavailable | None = None
        try:
            with transaction.atomic(), account_registry.uncached_until_commit():
                try:
                    foreseen = _foreseen_refusal(self._backend, items, outcomes, self.holds)
                    replayed = _first_refusal(outcomes)  # a resent item refused then
                    refusals = [found for found in (replayed, foreseen) if found is not None]
                    if refusals:
                        raise refused_at(*min(refusals, key=lambda found: found[0]))
                    pending = self._prepare(items, outcomes)
                    refusal = _first_refusal(outcomes)
                    if refusal is not None:
                        raise refused_at(*refusal)
                    self._post_chain(pending, outcomes, made_by=made_by)
                except errors.StoreUnavailable as failure:
                    # The outcome is unknown (TigerBeetle may hold the batch): keep what was
                    # set up, and a resend repairs the rest.
                    unavailable = failure
        except errors.WalletError as refusal:
            index = refusal.details.get("item")
            if isinstance(index, int):
                _remember_refused(self, items[index], refusal, made_by)
            raise
        if unavailable is not None:
            raise unavailable

    # --- preparing ---------------------------------------------------------------------------

    def _prepare(
        self, items: Sequence[BatchItem], outcomes: list[BatchOutcome | None]
    ) -> list[_Pending]:
        """The transfers of the items not answered yet, in order; each wallet found (a
        credited one set up on first use, with its limit reservation), or the item refused."""
        accounts = WalletAccounts(self._backend, scope=self._scope)
        wallets: dict[WalletKey, RegisteredAccount | errors.WalletError] = {}
        new = [(index, item) for index, item in enumerate(items) if outcomes[index] is None]
        # Credits first: a batch may credit a new wallet and debit it (or hold) further on.
        keys = {index: self.holds.wallet_of(item) for index, item in new}
        # The registered wallets in one read (per 900 clients), not one per wallet.
        known = account_registry.find_accounts(key for key in keys.values() if key is not None)
        for index, item in sorted(new, key=lambda pair: pair[1].kind is not BatchItemKind.CREDIT):
            key = keys[index]
            assert key is not None, "a hold not found was answered before"
            if key not in wallets:
                wallets[key] = self._wallet(accounts, item.kind, key, known.get(key))
        pending = []
        for index, item in new:
            key = keys[index]
            assert key is not None
            found = wallets[key]
            if isinstance(found, errors.WalletError):
                outcomes[index] = found
                continue
            if item.kind.is_hold_operation:
                planned = self.holds.transfer(index, item, found)
                pending.append(_Pending(index, item, found, planned.transfer, key, planned.delta))
                continue
            build = credit_transfer if item.kind is BatchItemKind.CREDIT else debit_transfer
            transfer = build(
                item.transaction_id,
                ids=self._scope.ids,
                tb_account_id=found.tb_account_id,
                ledger=found.ledger,
                amount_minor=item.amount_minor,
            )
            delta = (
                (item.amount_minor, 0, 0)
                if item.kind is BatchItemKind.CREDIT
                else (0, item.amount_minor, 0)
            )
            pending.append(_Pending(index, item, found, transfer, key, delta))
        return pending

    def _wallet(
        self,
        accounts: WalletAccounts,
        kind: BatchItemKind,
        key: WalletKey,
        found: RegisteredAccount | None,
    ) -> RegisteredAccount | errors.WalletError:
        """The wallet's account (`found`: its registry entry, read before): a credit's set up
        on first use, any other item's found."""
        if kind is not BatchItemKind.CREDIT:
            if found is None:
                return errors.WalletNotFound(f"No wallet {key.describe()}.")
            return found
        registered = found
        if registered is None:
            registered = store_call(accounts.registered_account, key)
        if not registered.limit_reserved:
            try:
                store_call(accounts.reserve_limit, key, registered)
            except errors.BalanceLimitExceeded as refusal:
                return refusal
        return registered

    # --- posting -----------------------------------------------------------------------------

    def _post_independent(
        self, pending: list[_Pending], outcomes: list[BatchOutcome | None], *, made_by: str
    ) -> None:
        if not pending:
            return
        results, sent = self._send(pending)
        created = []
        try:
            for entry, result in zip(pending, results, strict=True):
                if result.status == CreateTransferStatus.CREATED:
                    created.append((entry, result))
                else:
                    outcomes[entry.index] = self._answer_refusal(entry, result, made_by=made_by)
            _record_created(created, made_by=made_by)  # while the lookup after travels
        finally:
            walks = sent.walks()
        self._answer_created(created, walks, outcomes, made_by=made_by)

    def _post_chain(
        self, pending: list[_Pending], outcomes: list[BatchOutcome | None], *, made_by: str
    ) -> None:
        """All or none, as one linked chain; an item TigerBeetle already holds is answered
        as its replay and the chain goes again without it (each pass answers one more)."""
        while pending:
            chained = [
                dataclasses.replace(
                    entry, transfer=_linked(entry.transfer, last=position == len(pending) - 1)
                )
                for position, entry in enumerate(pending)
            ]
            results, sent = self._send(chained)
            try:
                breaking = next(
                    (
                        (entry, result)
                        for entry, result in zip(pending, results, strict=True)
                        if result.status not in _CHAIN_ACCEPTED
                    ),
                    None,
                )
                if breaking is None:
                    created = list(zip(chained, results, strict=True))
                    _record_created(created, made_by=made_by)  # while the lookup travels
            finally:
                walks = sent.walks()
            if breaking is None:
                self._answer_created(created, walks, outcomes, made_by=made_by)
                return
            entry, result = breaking
            answer = self._answer_refusal(entry, result, made_by=made_by)
            if isinstance(answer, errors.WalletError):
                raise refused_at(entry.index, answer)
            outcomes[entry.index] = answer
            pending = [other for other in pending if other is not entry]

    def _send(self, pending: list[_Pending]) -> tuple[list[CreateTransferResult], _Sent]:
        """The one create_transfers request, between two lookups of the batch's wallets:
        the one before travels with the write (the real client sends a session's requests
        in order), the one after is begun and collected by the caller (`_Sent.walks`)."""
        assert len(pending) <= BATCH_EVENTS_MAX
        self._fence.cover(entry.registered.registry_pk for entry in pending)
        account_ids = sorted({entry.registered.tb_account_id for entry in pending})
        before = store_call(self._backend.begin_lookup_accounts, account_ids)
        try:
            answer = store_call(self._backend.begin_create_transfers, [e.transfer for e in pending])
        finally:
            found_before = store_call(before)  # every request sent is answered
        results = store_call(answer)
        after = store_call(self._backend.begin_lookup_accounts, account_ids)
        return results, _Sent(found_before, after)

    def _answer_refusal(
        self, entry: _Pending, result: CreateTransferResult, *, made_by: str
    ) -> BatchOutcome:
        """An item TigerBeetle did not create: the single write's answer to the same."""
        key = entry.key
        try:
            if entry.item.kind.is_hold_operation:
                return self.holds.refused(
                    entry.index,
                    entry.item,
                    registered=entry.registered,
                    transfer=entry.transfer,
                    result=result,
                    made_by=made_by,
                )
            if entry.item.kind is BatchItemKind.CREDIT and result.status in LIMIT_OVERFLOWS:
                raise limit_exceeded(key)
            return answer_not_created(
                self._backend,
                entry.transfer,
                result,
                transaction_id=entry.item.transaction_id,
                kind=entry.item.kind.transaction_kind,
                key=key,
                registered=entry.registered,
                made_by=made_by,
            )
        except errors.StoreUnavailable:
            raise
        except errors.WalletError as refusal:
            return refusal

    def _answer_created(
        self,
        created: list[tuple[_Pending, CreateTransferResult]],
        walks: dict[int, _BalanceWalk],
        outcomes: list[BatchOutcome | None],
        *,
        made_by: str,
    ) -> None:
        """The created items' results, each with the balance right after it."""
        for entry, _ in created:
            walks[entry.registered.tb_account_id].posted(entry.delta)
        for entry, result in created:
            item = entry.item
            if item.kind.is_hold_operation:
                hold = self.holds.created(
                    entry.index,
                    item,
                    registered=entry.registered,
                    made_by=made_by,
                    transfer=entry.transfer,
                    timestamp=result.timestamp,
                )
                balance = self._balance_after(entry, result, walks)
                outcomes[entry.index] = HoldResult(hold=hold, balance=balance)
                continue
            outcomes[entry.index] = WalletResult(
                transaction=TransactionRecord(
                    transaction_id=item.transaction_id,
                    kind=item.kind.transaction_kind,
                    key=entry.key,
                    amount_minor=item.amount_minor,
                    state=TransactionState.POSTED,
                    created_at=_write_time(result.timestamp // _NS_PER_MS),
                    made_by=made_by,
                ),
                balance=self._balance_after(entry, result, walks),
            )
        self.holds.record_placements()

    def _balance_after(
        self,
        entry: _Pending,
        result: CreateTransferResult,
        walks: dict[int, _BalanceWalk],
    ) -> WalletBalance:
        account_id = entry.registered.tb_account_id
        walk = walks[account_id]
        if walk.alone():
            credits_posted, debits_posted, debits_pending = walk.step(entry.delta)
            return wallet_balance(
                entry.key,
                credits_posted=credits_posted,
                debits_posted=debits_posted,
                debits_pending=debits_pending,
                as_of_tb_timestamp=result.timestamp,
            )
        return balance_at(
            self._backend, entry.key, tb_account_id=account_id, tb_timestamp=result.timestamp
        )


def _remember_refused(
    batch: TigerBeetleBatch, item: BatchItem, refusal: errors.WalletError, made_by: str
) -> None:
    """After the rollback: the refused debit's or hold's row, so a resend is refused the
    same way (a wallet the batch would have created has none: the resend meets it new
    again)."""
    if not isinstance(refusal, errors.InsufficientFunds) or item.kind not in (
        BatchItemKind.DEBIT,
        BatchItemKind.HOLD,
    ):
        return
    registered = account_registry.find_account(item.wallet)
    if registered is None:
        return
    if item.kind is BatchItemKind.HOLD:
        batch.holds.remember_refused(item, registered=registered, made_by=made_by)
        return
    transfer = debit_transfer(
        item.transaction_id,
        ids=batch.scope.ids,
        tb_account_id=registered.tb_account_id,
        ledger=registered.ledger,
        amount_minor=item.amount_minor,
    )
    remember_transfer(
        transfer,
        item.transaction_id,
        TransactionKind.DEBIT,
        registered,
        None,
        failure_code=errors.InsufficientFunds.code,
        made_by=made_by,
    )


def _first_refusal(
    outcomes: list[BatchOutcome | None],
) -> tuple[int, errors.WalletError] | None:
    return next(
        (
            (index, outcome)
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, errors.WalletError)
        ),
        None,
    )


def _foreseen_refusal(
    backend: LedgerBackend,
    items: Sequence[BatchItem],
    outcomes: list[BatchOutcome | None],
    holds: BatchHolds,
) -> tuple[int, errors.WalletError] | None:
    """The first item of an all-or-nothing batch that its wallets' balances now would
    refuse (a debit or hold of a wallet no credit of the batch creates, or past its
    available credit), found before any account is set up or any transfer sent: TigerBeetle
    then never holds the refused transfer's id as failed, and no account is made for a batch
    refused. None when every item would pass (the chain still decides, if a concurrent
    write moved a wallet since, or a hold's timeout passed)."""
    new = [(index, item) for index, item in enumerate(items) if outcomes[index] is None]
    wallet_of = {index: holds.wallet_of(item) for index, item in new}
    keys = {key for key in wallet_of.values() if key is not None}
    registered = {key: account_registry.find_account(key) for key in keys}
    found = store_call(
        backend.lookup_accounts,
        sorted({entry.tb_account_id for entry in registered.values() if entry is not None}),
    )
    by_id = {account.id: account for account in found}
    credited = {item.key for _, item in new if item.kind is BatchItemKind.CREDIT}
    # Per wallet: (credits posted, debits posted and pending); an unknown account is left
    # to TigerBeetle.
    balances: dict[WalletKey, list[int]] = {}
    for key, entry in registered.items():
        account = by_id.get(entry.tb_account_id) if entry is not None else None
        if account is not None:
            balances[key] = [account.credits_posted, account.debits_posted + account.debits_pending]
        elif entry is None:
            balances[key] = [0, 0]
    for index, item in new:
        wallet = wallet_of[index]
        assert wallet is not None, "a hold not found was answered before"
        unknown = registered[wallet] is None and wallet not in credited
        if item.kind is not BatchItemKind.CREDIT and unknown:
            return index, errors.WalletNotFound(f"No wallet {wallet.describe()}.")
        balance = balances.get(wallet)
        if balance is None:
            continue
        if item.kind is BatchItemKind.CREDIT:
            balance[0] += item.amount_minor
            continue
        debit = item.amount_minor if item.kind is BatchItemKind.DEBIT else 0
        if item.kind.is_hold_operation:
            debit = holds.foreseen_debit(index, item)
        if debit > 0 and balance[1] + debit > balance[0]:
            what = "the hold" if item.kind is BatchItemKind.HOLD else "the amount"
            return index, errors.InsufficientFunds(
                f"Wallet {wallet.describe()} has less available credit than {what}."
            )
        balance[1] += debit
    return None


_CHAIN_ACCEPTED = (CreateTransferStatus.CREATED, CreateTransferStatus.LINKED_EVENT_FAILED)


class _Sent:
    """A sent batch's lookups of its wallets: the one before, and the one after (begun,
    collected once by `walks`, always: every request sent is answered)."""

    def __init__(self, before: list[Account], after: Callable[[], list[Account]]) -> None:
        self._before = before
        self._after = after

    def walks(self) -> dict[int, _BalanceWalk]:
        after = store_call(self._after)
        walks = {
            account.id: _BalanceWalk(
                credits_posted=account.credits_posted,
                debits_posted=account.debits_posted,
                debits_pending=account.debits_pending,
            )
            for account in self._before
        }
        for account in after:
            walks[account.id].after = (
                account.credits_posted,
                account.debits_posted,
                account.debits_pending,
            )
        return walks


@functools.lru_cache(maxsize=4096)
def _write_time(tb_timestamp_ms: int) -> datetime:
    """A transfer's write time from its timestamp's millisecond (a batch's transfers share
    a few milliseconds)."""
    return time_of_tb_timestamp(tb_timestamp_ms * _NS_PER_MS)


def _record_created(created: list[tuple[_Pending, CreateTransferResult]], *, made_by: str) -> None:
    """The created items' registry rows, in one bulk insert."""
    transfer_registry.record_store_writes(
        [
            transfer_registry.BatchWrite(
                entry.item.transaction_id,
                entry.registered.registry_pk,
                str(entry.item.kind),
                entry.item.amount_minor,
                entry.transfer.id,
                result.timestamp,
                _write_time(result.timestamp // _NS_PER_MS),
                made_by,
            )
            for entry, result in created
            if not entry.item.kind.is_hold_operation  # hold rows: BatchHolds.created
        ]
    )


class _BalanceWalk:
    """One wallet's amounts (credits posted, debits posted, debits pending: its open holds)
    through a batch: before it, after it, and what the batch changed; `step` walks from
    before through the batch's transfers in order."""

    def __init__(self, *, credits_posted: int, debits_posted: int, debits_pending: int) -> None:
        self.current = (credits_posted, debits_posted, debits_pending)
        self.before = self.current
        self.after: tuple[int, int, int] | None = None
        self.batch = (0, 0, 0)

    def posted(self, delta: Delta) -> None:
        """Count a transfer of the batch that TigerBeetle created on this wallet."""
        self.batch = _added(self.batch, delta)

    def alone(self) -> bool:
        """Whether the batch was the only write to the wallet between the two lookups (no
        other write, and no hold placed, resolved or expired)."""
        return self.after == _added(self.before, self.batch)

    def step(self, delta: Delta) -> tuple[int, int, int]:
        self.current = _added(self.current, delta)
        return self.current


def _added(amounts: tuple[int, int, int], delta: Delta) -> tuple[int, int, int]:
    return (amounts[0] + delta[0], amounts[1] + delta[1], amounts[2] + delta[2])


def _linked(transfer: Transfer, *, last: bool) -> Transfer:
    """The transfer as a link of a chain (the last one closes it)."""
    if last:
        return transfer
    return dataclasses.replace(transfer, flags=transfer.flags | TransferFlags.LINKED)


def _replays(
    backend: LedgerBackend, replayed: list[tuple[int, BatchItem]]
) -> dict[int, BatchOutcome]:
    """The answers of credits and debits the registry holds, by index, each what
    `replay_if_known` answers for one (the original result, or the conflict or first
    refusal), read in bulk: the rows in a query per _REGISTRY_IDS_PER_QUERY ids, the
    timestamps rows lack in one lookup_transfers, the balances right after the original
    transfers by `balances_at` (a request per wallet, sent together)."""
    if not replayed:
        return {}
    rows = _registered_rows([item.transaction_id for _, item in replayed])
    answers: dict[int, BatchOutcome] = {}
    checked: list[tuple[int, WalletTransfer]] = []
    for index, item in replayed:
        row = rows.get(item.transaction_id)
        assert row is not None, "a registered id replays (registry rows are never deleted)"
        try:
            check_replay(
                row,
                kind=item.kind.transaction_kind,
                key=item.wallet,
                amount_minor=item.amount_minor,
            )
        except errors.WalletError as refusal:
            answers[index] = refusal
            continue
        checked.append((index, row))
    stamps = transfer_timestamps(
        backend, [row.tb_transfer_id for _, row in checked if not row.tb_timestamp]
    )
    points: list[tuple[int, WalletTransfer, int]] = []
    for index, row in checked:
        timestamp = row.tb_timestamp or stamps.get(row.tb_transfer_id)
        if timestamp is None:
            answers[index] = errors.TransactionNotFound(
                "The transaction's transfer is not in the ledger."
            )
            continue
        points.append((index, row, timestamp))
    balances = balances_at(
        backend, [(row.wallet.key, row.wallet.tb_account_id, stamp) for _, row, stamp in points]
    )
    for index, row, timestamp in points:
        answers[index] = WalletResult(
            transaction=transfer_registry.transaction_record(row),
            balance=balances[(row.wallet.tb_account_id, timestamp)],
            replayed=True,
        )
    assert len(answers) == len(replayed), "every replayed item answered"
    return answers


def _registered_rows(transaction_ids: list[str]) -> dict[str, WalletTransfer]:
    """The registry rows of these ids, with their wallets, in queries of
    _REGISTRY_IDS_PER_QUERY ids."""
    found: dict[str, WalletTransfer] = {}
    for start in range(0, len(transaction_ids), _REGISTRY_IDS_PER_QUERY):
        chunk = transaction_ids[start : start + _REGISTRY_IDS_PER_QUERY]
        for row in WalletTransfer.objects.select_related("wallet").filter(transaction_id__in=chunk):
            found[row.transaction_id] = row
    return found


def _registered_ids(transaction_ids: list[str]) -> set[str]:
    """Which of the ids the registry holds (a resent item answers from it). One plain
    statement per query, its ids bound as they are: the ORM's `__in` lookup prepared each
    of 8,189 values on its own, several times the database's work."""
    table = connection.ops.quote_name(WalletTransfer._meta.db_table)
    column = connection.ops.quote_name(_TRANSACTION_ID_COLUMN)
    found: set[str] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)", [transaction_ids]
            )
            found.update(row[0] for row in cursor.fetchall())
            return found
        for start in range(0, len(transaction_ids), _REGISTRY_IDS_PER_QUERY):
            chunk = transaction_ids[start : start + _REGISTRY_IDS_PER_QUERY]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", chunk)
            found.update(row[0] for row in cursor.fetchall())
    return found
