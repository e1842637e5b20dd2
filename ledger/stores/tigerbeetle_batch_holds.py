"""The TigerBeetle store's batches, their hold items: each a transfer of the batch's one
create_transfers request, answered as the single hold operations (`tigerbeetle_holds`) answer.

A hold item is its pending transfer with the hold's timeout (`tb_model.hold_transfer`), a
capture its post and a release its void (`tb_model.hold_resolution`, under the hold's one
resolution id), in the batch's order and, all-or-nothing, in its linked chain. What the
registry already decides is answered without a transfer, as the single operations do: a
known hold id replays or conflicts, a hold not found, a capture above the hold, a hold no
longer open (the same resolution again replays). What TigerBeetle decides (funds, a hold
its timeout expired, a resolution racing the batch) is learnt from its answer; each hold's
registry row is written after TigerBeetle took it (`registry.holds`), as for a single hold.

Each item's balance change is known before it is sent (`delta`), so the batch's balance walk
(`tigerbeetle_batch._BalanceWalk`) answers each item's balance right after it, held included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tigerbeetle import CreateTransferResult, CreateTransferStatus, Transfer

from domain import errors
from domain.batches import BatchItem, BatchItemKind, BatchOutcome, capture_minor_of, refused_at
from domain.holds import Hold, HoldResult, HoldState
from domain.ids import WalletKey
from domain.wallets import WalletBalance, time_of_tb_timestamp
from ledger.backends import LedgerBackend
from ledger.history import store_call
from ledger.stores.tigerbeetle_holds import (
    HOLD_ID_TAKEN,
    RESOLVED_STATUSES,
    TigerBeetleHolds,
    hold_of_row,
    stored_timestamp,
)
from ledger.tb_model import LedgerScope, balance_from_account, hold_resolution, hold_transfer
from ledger.wallet_accounts import unexpected_refusal
from registry import holds as hold_registry
from registry.accounts import RegisteredAccount
from registry.models import WalletHold

# Hold ids read from the registry per query (SQLite binds at most 32,766 parameters).
_HOLD_IDS_PER_QUERY = 4000
_NS_PER_S = 1_000_000_000
# A transfer's change of its wallet's (credits posted, debits posted, debits pending).
Delta = tuple[int, int, int]


@dataclass(frozen=True)
class HoldTransfer:
    """A hold item's transfer and what it changes on its wallet."""

    transfer: Transfer
    delta: Delta


class BatchHolds:
    """A batch's hold items on one backend (one per batch: it keeps each item's row and
    captured amount between the registry's answers and TigerBeetle's)."""

    def __init__(
        self,
        backend: LedgerBackend,
        *,
        scope: LedgerScope,
        balance: Callable[[WalletKey], WalletBalance],
        items: list[BatchItem],
    ) -> None:
        self._backend = backend
        self._scope = scope
        self._holds = TigerBeetleHolds(backend, scope=scope, balance=balance)
        self.rows = _hold_rows(
            [item.transaction_id for item in items if item.kind.is_hold_operation]
        )
        self._wanted: dict[int, int | None] = {}
        self._placements: list[hold_registry.Placement] = []
        self._balances_now: dict[WalletKey, WalletBalance] | None = None

    def wallet_of(self, item: BatchItem) -> WalletKey | None:
        """The item's wallet: the one it names, or its hold's (None: no such hold)."""
        if item.kind.names_wallet:
            return item.wallet
        row = self.rows.get(item.transaction_id)
        return row.wallet.key if row is not None else None

    def answer_known(self, index: int, item: BatchItem) -> BatchOutcome | None:
        """The item's answer when the registry decides it (None: it goes to TigerBeetle). A
        capture's amount the hold's currency refuses is the whole batch's 400, raised."""
        row = self.rows.get(item.transaction_id)
        if item.kind is BatchItemKind.HOLD:
            if row is None:
                return None
            try:
                return self._holds.replay_place(
                    row,
                    item.wallet,
                    amount_minor=item.amount_minor,
                    timeout_s=item.timeout_s,
                    balance=self._balance_now(row),
                )
            except errors.StoreUnavailable:
                raise
            except errors.WalletError as refusal:
                return refusal
        if row is None:
            return errors.HoldNotFound(f"No hold {item.transaction_id!r}.")
        wanted = None
        if item.kind is BatchItemKind.CAPTURE:
            try:
                wanted = capture_minor_of(item, row.wallet.key.currency) or row.amount_minor
            except errors.WalletError as refusal:
                raise refused_at(index, refusal) from None
            if wanted > row.amount_minor:
                return errors.CaptureExceedsHold(
                    f"Hold {row.hold_id!r} reserved {row.amount_minor} minor units; "
                    f"a capture of {wanted} is more.",
                    hold_amount_minor=row.amount_minor,
                )
        self._wanted[index] = wanted
        if row.state != WalletHold.State.OPEN:
            return self._holds.answer(row, wanted, replayed=True, balance=self._balance_now(row))
        return None

    def _balance_now(self, row: WalletHold) -> WalletBalance | None:
        """The balance now of a known hold's wallet, for a replay: the wallets of every hold
        the registry knows are looked up once, at the first replay (a lookup per replayed
        item was most of a resent batch's time). None: an account TigerBeetle did not
        return, read alone by the answer (which then refuses as a single replay does)."""
        if self._balances_now is None:
            wallets = {known.wallet.tb_account_id: known.wallet.key for known in self.rows.values()}
            accounts = store_call(self._backend.lookup_accounts, sorted(wallets))
            self._balances_now = {
                wallets[account.id]: balance_from_account(wallets[account.id], account)
                for account in accounts
            }
        return self._balances_now.get(row.wallet.key)

    def transfer(self, index: int, item: BatchItem, registered: RegisteredAccount) -> HoldTransfer:
        """The item's transfer (the registry did not answer it)."""
        if item.kind is BatchItemKind.HOLD:
            pending = hold_transfer(
                item.transaction_id,
                ids=self._scope.ids,
                tb_account_id=registered.tb_account_id,
                ledger=registered.ledger,
                amount_minor=item.amount_minor,
                timeout_s=item.timeout_s,
            )
            return HoldTransfer(pending, (0, 0, item.amount_minor))
        row = self.rows[item.transaction_id]
        wanted = self._wanted[index]
        resolution = hold_resolution(row.tb_transfer_id, ids=self._scope.ids, capture_minor=wanted)
        return HoldTransfer(resolution, (0, wanted or 0, -row.amount_minor))

    def foreseen_debit(self, index: int, item: BatchItem) -> int:
        """What the item adds to its wallet's debits posted and pending, if TigerBeetle
        takes it (a resolution frees the hold, a capture posts what it takes)."""
        if item.kind is BatchItemKind.HOLD:
            return item.amount_minor
        row = self.rows[item.transaction_id]
        return (self._wanted.get(index) or 0) - row.amount_minor

    def created(
        self,
        index: int,
        item: BatchItem,
        *,
        registered: RegisteredAccount,
        made_by: str,
        transfer: Transfer,
        timestamp: int,
    ) -> Hold:
        """A hold item TigerBeetle created (or held already: a row a crash lost): the hold
        as it is now. A placement's row waits for `record_placements` (one bulk insert for
        the batch), a resolution's row is marked now."""
        timestamp = timestamp or stored_timestamp(self._backend, transfer.id)
        if item.kind is BatchItemKind.HOLD:
            created_at = time_of_tb_timestamp(timestamp)
            expires_at = time_of_tb_timestamp(timestamp + item.timeout_s * _NS_PER_S)
            self._placements.append(
                hold_registry.Placement(
                    hold_id=item.transaction_id,
                    wallet_pk=registered.registry_pk,
                    amount_minor=item.amount_minor,
                    timeout_s=item.timeout_s,
                    tb_transfer_id=transfer.id,
                    tb_timestamp=timestamp,
                    created_at=created_at,
                    expires_at=expires_at,
                    made_by=made_by,
                )
            )
            return Hold(
                hold_id=item.transaction_id,
                key=item.wallet,
                amount_minor=item.amount_minor,
                captured_minor=0,
                state=HoldState.OPEN,
                timeout_s=item.timeout_s,
                created_at=created_at,
                expires_at=expires_at,
                made_by=made_by,
            )
        row = self.rows[item.transaction_id]
        hold_registry.mark_resolved(
            row,
            captured_minor=self._wanted[index],
            resolution_tb_transfer_id=transfer.id,
            resolved_at=time_of_tb_timestamp(timestamp),
            resolved_by=made_by,
            from_store=True,
        )
        return hold_of_row(row)

    def record_placements(self) -> None:
        """The rows of the holds the batch placed, in one bulk insert."""
        placements, self._placements = self._placements, []
        if placements:
            hold_registry.record_placed_many(placements)

    def refused(
        self,
        index: int,
        item: BatchItem,
        *,
        registered: RegisteredAccount,
        transfer: Transfer,
        result: CreateTransferResult,
        made_by: str,
    ) -> BatchOutcome:
        """A hold item TigerBeetle did not create: the single operation's answer to the
        same (EXISTS answers as created)."""
        status = result.status
        if status == CreateTransferStatus.EXISTS:
            hold = self.created(
                index,
                item,
                registered=registered,
                made_by=made_by,
                transfer=transfer,
                timestamp=0,
            )
            self.record_placements()
            return HoldResult(hold=hold, balance=self._holds.balance(hold.key))
        if item.kind is BatchItemKind.HOLD:
            if status in (
                CreateTransferStatus.EXCEEDS_CREDITS,
                CreateTransferStatus.ID_ALREADY_FAILED,
            ):
                self.remember_refused(item, registered=registered, made_by=made_by)
                return errors.InsufficientFunds(
                    f"Wallet {item.wallet.describe()} has less available credit than the hold."
                )
            if status in HOLD_ID_TAKEN:
                return errors.IdempotencyConflict(
                    f"Hold id {item.transaction_id!r} was already used for a different hold."
                )
            raise unexpected_refusal(status, transfer)
        row = self.rows[item.transaction_id]
        if status == CreateTransferStatus.EXCEEDS_PENDING_TRANSFER_AMOUNT:
            return errors.CaptureExceedsHold()  # checked before: the row and ledger disagree
        if status not in RESOLVED_STATUSES:
            raise unexpected_refusal(status, transfer)
        self._holds.learn_resolution(row, refused_status=status)
        return self._holds.answer(row, self._wanted[index], replayed=False)

    def remember_refused(
        self, item: BatchItem, *, registered: RegisteredAccount, made_by: str
    ) -> None:
        """A hold refused for funds, remembered so a retry of its id is refused alike."""
        if item.kind is not BatchItemKind.HOLD:
            return
        pending = hold_transfer(
            item.transaction_id,
            ids=self._scope.ids,
            tb_account_id=registered.tb_account_id,
            ledger=registered.ledger,
            amount_minor=item.amount_minor,
            timeout_s=item.timeout_s,
        )
        self._holds.record(
            pending, item.transaction_id, registered.registry_pk, None, made_by, refused=True
        )


def _hold_rows(hold_ids: list[str]) -> dict[str, WalletHold]:
    """The registry rows of these hold ids, in queries of _HOLD_IDS_PER_QUERY."""
    found: dict[str, WalletHold] = {}
    for start in range(0, len(hold_ids), _HOLD_IDS_PER_QUERY):
        chunk = hold_ids[start : start + _HOLD_IDS_PER_QUERY]
        for row in WalletHold.objects.select_related("wallet").filter(hold_id__in=chunk):
            found[row.hold_id] = row
    return found
