"""Holds on TigerBeetle: a pending transfer with a timeout, posted to capture, voided to release.

Why TigerBeetle's own two-phase transfers: the cluster then enforces everything a hold
promises, atomically. A hold is a pending transfer wallet -> system account
(`tb_model.hold_transfer`): the wallet's `debits_must_not_exceed_credits` counts pending
debits, so the held money leaves the available credit at once and a racing debit cannot spend
it. Its capture posts it (all, or less: TigerBeetle releases the rest) and its release voids
it, both under one resolution id per hold (`tb_model.hold_resolution`), so of a capture and a
release racing exactly one resolves it. Its expiry is the transfer's `timeout`, applied by the
cluster's own clock: a later capture answers `pending_transfer_expired`.

The registry's WalletHold row names the hold's transfers and keeps its audit; TigerBeetle
first, the row after, as for credits and debits: a row a crash left behind is repaired by the
next operation on the hold, which reads what TigerBeetle holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone
from tigerbeetle import CreateTransferStatus, Transfer, TransferFlags

from domain import errors
from domain.holds import Hold, HoldResult, HoldState
from domain.ids import WalletKey
from domain.wallets import WalletBalance, time_of_tb_timestamp, write_time
from ledger.backends import LedgerBackend
from ledger.history import registered_wallet, store_call, transfers_by_id
from ledger.tb_model import LedgerScope, hold_resolution, hold_transfer
from ledger.wallet_accounts import unexpected_refusal
from registry import holds as hold_registry
from registry.models import WalletHold
from registry.movement_fence import MovementFence

_NS_PER_S = 1_000_000_000
# A wallet's open holds support's page lists (the oldest first).
OPEN_HOLDS_LISTED_MAX = 100
HOLD_ID_TAKEN = {
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_AMOUNT,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_TIMEOUT,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_LEDGER,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_CODE,
    CreateTransferStatus.EXISTS_WITH_DIFFERENT_FLAGS,
}
# The pending transfer was resolved already (by the other resolution, or by its timeout).
RESOLVED_STATUSES = {
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED,
    CreateTransferStatus.PENDING_TRANSFER_ALREADY_VOIDED,
    CreateTransferStatus.PENDING_TRANSFER_EXPIRED,
    CreateTransferStatus.ID_ALREADY_FAILED,
    *(status for status in CreateTransferStatus if status.name.startswith("EXISTS_WITH_DIFF")),
}


class TigerBeetleHolds:
    """The hold operations of the TigerBeetle store (`balance`: the store's balance read)."""

    def __init__(
        self,
        backend: LedgerBackend,
        *,
        scope: LedgerScope,
        balance: Callable[[WalletKey], WalletBalance],
    ) -> None:
        self.backend = backend
        self.scope = scope
        self.balance = balance

    def place_hold(
        self, key: WalletKey, amount_minor: int, hold_id: str, *, timeout_s: int, made_by: str
    ) -> HoldResult:
        assert amount_minor > 0 and timeout_s > 0, "the service validated the hold"
        known = _registered_hold(hold_id)
        if known is not None:
            return self.replay_place(known, key, amount_minor=amount_minor, timeout_s=timeout_s)
        registered = registered_wallet(key)
        pending = hold_transfer(
            hold_id,
            ids=self.scope.ids,
            tb_account_id=registered.tb_account_id,
            ledger=registered.ledger,
            amount_minor=amount_minor,
            timeout_s=timeout_s,
        )
        with MovementFence() as fence:  # from the send until the row committed
            fence.cover([registered.registry_pk])
            (result,) = store_call(self.backend.create_transfers, [pending])
            status = result.status
            if status in (CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS):
                timestamp = int(result.timestamp) or stored_timestamp(self.backend, pending.id)
                row = self.record(pending, hold_id, registered.registry_pk, timestamp, made_by)
        if status in (CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS):
            return HoldResult(hold=hold_of_row(row), balance=self.balance(key))
        if status in (CreateTransferStatus.EXCEEDS_CREDITS, CreateTransferStatus.ID_ALREADY_FAILED):
            self.record(pending, hold_id, registered.registry_pk, None, made_by, refused=True)
            raise errors.InsufficientFunds(
                f"Wallet {key.describe()} has less available credit than the hold."
            )
        if status in HOLD_ID_TAKEN:
            raise errors.IdempotencyConflict(
                f"Hold id {hold_id!r} was already used for a different hold."
            )
        raise unexpected_refusal(status, pending)

    def capture_hold(self, hold_id: str, *, amount_minor: int | None, made_by: str) -> HoldResult:
        return self._resolve(hold_id, capture_minor=amount_minor, made_by=made_by)

    def release_hold(self, hold_id: str, *, made_by: str) -> HoldResult:
        return self._resolve(hold_id, capture_minor=None, made_by=made_by, release=True)

    def get_hold(self, hold_id: str) -> Hold:
        row = _registered_hold(hold_id)
        if row is None:
            raise errors.HoldNotFound(f"No hold {hold_id!r}.")
        return self.hold_now(row)

    def hold_now(self, row: WalletHold) -> Hold:
        """The hold of a row just read, as it is now (an open row past its expiry learns
        what TigerBeetle holds)."""
        if row.state == WalletHold.State.OPEN and row.expires_at <= timezone.now():
            self.learn_resolution(row)
        return hold_of_row(row)

    # --- internals --------------------------------------------------------------------------

    def _resolve(
        self, hold_id: str, *, capture_minor: int | None, made_by: str, release: bool = False
    ) -> HoldResult:
        """Capture (`capture_minor`, None: all) or release the hold, at most once: the row is
        locked for the attempt, and TigerBeetle takes one resolution per hold."""
        # The fence from the send until the row committed (after the transaction).
        with MovementFence() as fence, transaction.atomic():
            row = (
                WalletHold.objects.select_for_update()
                .select_related("wallet")
                .filter(hold_id=hold_id)
                .first()
            )
            if row is None:
                raise errors.HoldNotFound(f"No hold {hold_id!r}.")
            wanted = None if release else (capture_minor or row.amount_minor)
            if wanted is not None and wanted > row.amount_minor:
                raise errors.CaptureExceedsHold(
                    f"Hold {hold_id!r} reserved {row.amount_minor} minor units; "
                    f"a capture of {wanted} is more.",
                    hold_amount_minor=row.amount_minor,
                )
            was_open = row.state == WalletHold.State.OPEN
            if was_open:
                fence.cover([row.wallet_id])
                self._send_resolution(row, wanted, made_by=made_by)
            outcome = self.answer(row, wanted, replayed=not was_open)
        if isinstance(outcome, errors.WalletError):
            raise outcome  # after the commit, so what was learnt of the hold is kept
        return outcome

    def answer(
        self,
        row: WalletHold,
        wanted: int | None,
        *,
        replayed: bool,
        balance: WalletBalance | None = None,
    ) -> HoldResult | errors.WalletError:
        """A resolution's answer from the row; `balance`: the wallet's balance now, when the
        caller read it (a batch reads its replays' wallets in one lookup)."""
        hold = hold_of_row(row)
        if not _same_resolution(row, wanted):
            return errors.HoldNotOpen(
                f"Hold {row.hold_id!r} is {hold.state.value}.", state=hold.state.value
            )
        if balance is None:
            balance = self.balance(row.wallet.key)
        return HoldResult(hold=hold, balance=balance, replayed=replayed)

    def _send_resolution(self, row: WalletHold, wanted: int | None, *, made_by: str) -> None:
        """Post or void the hold's pending transfer; the row learns what TigerBeetle holds.
        A row that stays open afterwards was resolved by nothing, which cannot happen."""
        resolution = hold_resolution(row.tb_transfer_id, ids=self.scope.ids, capture_minor=wanted)
        (result,) = store_call(self.backend.create_transfers, [resolution])
        if result.status in (CreateTransferStatus.CREATED, CreateTransferStatus.EXISTS):
            timestamp = int(result.timestamp) or stored_timestamp(self.backend, resolution.id)
            hold_registry.mark_resolved(
                row,
                captured_minor=wanted,
                resolution_tb_transfer_id=resolution.id,
                resolved_at=time_of_tb_timestamp(timestamp),
                resolved_by=made_by,
                from_store=True,
            )
            return
        if result.status == CreateTransferStatus.EXCEEDS_PENDING_TRANSFER_AMOUNT:
            raise errors.CaptureExceedsHold()  # checked before: the row and ledger disagree
        if result.status not in RESOLVED_STATUSES:
            raise unexpected_refusal(result.status, resolution)
        self.learn_resolution(row, refused_status=result.status)

    def learn_resolution(
        self, row: WalletHold, *, refused_status: CreateTransferStatus | None = None
    ) -> None:
        """The row of an open hold set to what TigerBeetle holds: its resolution (a capture
        or release whose row a crash lost), else expired once its timeout passed."""
        resolution_id = self.scope.ids.hold_resolution_transfer_id(row.tb_transfer_id)
        stored = transfers_by_id(self.backend, [resolution_id]).get(resolution_id)
        if stored is not None:
            captured = bool(stored.flags & TransferFlags.POST_PENDING_TRANSFER)
            hold_registry.mark_resolved(
                row,
                captured_minor=int(stored.amount) if captured else None,
                resolution_tb_transfer_id=resolution_id,
                resolved_at=time_of_tb_timestamp(int(stored.timestamp)),
                resolved_by="",
                from_store=True,
            )
        elif refused_status is not None or row.expires_at <= timezone.now():
            hold_registry.mark_expired(row, from_store=True)

    def record(
        self,
        pending: Transfer,
        hold_id: str,
        wallet_pk: int,
        timestamp: int | None,
        made_by: str,
        *,
        refused: bool = False,
    ) -> WalletHold:
        created_at = time_of_tb_timestamp(timestamp) if timestamp else write_time(timezone.now())
        expires_at = (
            time_of_tb_timestamp(timestamp + int(pending.timeout) * _NS_PER_S)
            if timestamp
            else created_at
        )
        return hold_registry.record_placed(
            hold_id=hold_id,
            wallet_pk=wallet_pk,
            amount_minor=int(pending.amount),
            timeout_s=int(pending.timeout),
            tb_transfer_id=pending.id,
            tb_timestamp=timestamp,
            created_at=created_at,
            expires_at=expires_at,
            made_by=made_by,
            failure_code="insufficient_funds" if refused else "",
            copy_back=True,  # the TigerBeetle store is primary only in phase 4
            from_store=True,
        )

    def replay_place(
        self,
        row: WalletHold,
        key: WalletKey,
        *,
        amount_minor: int,
        timeout_s: int,
        balance: WalletBalance | None = None,
    ) -> HoldResult:
        """A placement of a known hold id: its replay (the hold now, and the wallet's balance
        now: `balance` when the caller read it), or the conflict or first refusal, raised."""
        if row.wallet.key != key or row.amount_minor != amount_minor or row.timeout_s != timeout_s:
            raise errors.IdempotencyConflict(
                f"Hold id {row.hold_id!r} was already used for a different hold."
            )
        if row.state == WalletHold.State.FAILED:
            raise errors.InsufficientFunds(
                f"Wallet {key.describe()} had less available credit than the hold."
            )
        if balance is None:
            balance = self.balance(key)
        return HoldResult(hold=self.hold_now(row), balance=balance, replayed=True)


class TigerBeetleHoldOperations:
    """The TigerBeetle store's hold operations (`TigerBeetleWalletStore` inherits them), over
    `TigerBeetleHolds` and the store's backend, scope and balance read."""

    scope: LedgerScope

    @property
    def backend(self) -> LedgerBackend:
        raise NotImplementedError

    def get_balance(self, key: WalletKey) -> WalletBalance:
        raise NotImplementedError

    def _holds(self) -> TigerBeetleHolds:
        return TigerBeetleHolds(self.backend, scope=self.scope, balance=self.get_balance)

    def place_hold(
        self, key: WalletKey, amount_minor: int, hold_id: str, *, timeout_s: int, made_by: str = ""
    ) -> HoldResult:
        return self._holds().place_hold(
            key, amount_minor, hold_id, timeout_s=timeout_s, made_by=made_by
        )

    def capture_hold(
        self, hold_id: str, *, amount_minor: int | None = None, made_by: str = ""
    ) -> HoldResult:
        return self._holds().capture_hold(hold_id, amount_minor=amount_minor, made_by=made_by)

    def release_hold(self, hold_id: str, *, made_by: str = "") -> HoldResult:
        return self._holds().release_hold(hold_id, made_by=made_by)

    def get_hold(self, hold_id: str) -> Hold:
        return self._holds().get_hold(hold_id)

    def open_holds(self, key: WalletKey) -> list[Hold]:
        """The wallet's holds open now, oldest first (at most OPEN_HOLDS_LISTED_MAX)."""
        rows = (
            WalletHold.objects.select_related("wallet")
            .filter(
                **key.as_columns("wallet__"),
                state=WalletHold.State.OPEN,
                expires_at__gt=timezone.now(),
            )
            .order_by("created_at", "pk")[:OPEN_HOLDS_LISTED_MAX]
        )
        return [hold_of_row(row) for row in rows]


def hold_of_row(row: WalletHold) -> Hold:
    """A registry row as the hold every store returns (an open row past its expiry is
    expired: TigerBeetle voided it)."""
    state = HoldState(row.state)
    resolved_at = row.resolved_at
    if state == HoldState.OPEN and row.expires_at <= datetime.now(UTC):
        state, resolved_at = HoldState.EXPIRED, row.expires_at
    return Hold(
        hold_id=row.hold_id,
        key=row.wallet.key,
        amount_minor=row.amount_minor,
        captured_minor=row.captured_minor,
        state=state,
        timeout_s=row.timeout_s,
        created_at=row.created_at,
        expires_at=row.expires_at,
        made_by=row.made_by,
        resolved_at=resolved_at,
        resolved_by=row.resolved_by,
        failure_code=row.failure_code,
    )


def _same_resolution(row: WalletHold, wanted: int | None) -> bool:
    """Whether the hold is resolved exactly as asked: released for a release, captured for
    the same amount for a capture."""
    if wanted is None:
        return row.state == WalletHold.State.RELEASED
    return row.state == WalletHold.State.CAPTURED and row.captured_minor == wanted


def _registered_hold(hold_id: str) -> WalletHold | None:
    return WalletHold.objects.select_related("wallet").filter(hold_id=hold_id).first()


def stored_timestamp(backend: LedgerBackend, tb_transfer_id: int) -> int:
    stored = transfers_by_id(backend, [tb_transfer_id]).get(tb_transfer_id)
    if stored is None:
        raise errors.StoreUnavailable("TigerBeetle answered `exists` for a transfer it lacks.")
    return int(stored.timestamp)
