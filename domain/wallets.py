"""The wallet-level model both stores speak: balances, transaction records, the store interface.

Amounts here are integer minor units of the wallet's currency; `Decimal` appears only at the
edges (API serializers, admin), through `domain.money`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from domain.ids import WalletKey
from domain.money import from_minor_units

if TYPE_CHECKING:  # domain.history builds on this module's balance
    from domain.history import HistoryPage, HistoryQuery
if TYPE_CHECKING:  # domain.holds builds on this module's balance
    from domain.holds import Hold, HoldResult
if TYPE_CHECKING:  # domain.batches builds on this module's records
    from domain.batches import BatchItem, BatchOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def write_time(moment: datetime) -> datetime:
    """A write's time as every store keeps it: UTC, whole milliseconds (what a MongoDB
    date holds), so each store answers a transaction's created_at alike."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def time_of_tb_timestamp(timestamp_ns: int) -> datetime:
    """TigerBeetle's transfer timestamp (ns since the epoch, cluster time) as a write time."""
    return _EPOCH + timedelta(milliseconds=timestamp_ns // 1_000_000)


class TransactionKind(enum.StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


class TransactionState(enum.StrEnum):
    POSTED = "posted"
    VOIDED = "voided"
    # Refused (e.g. insufficient funds) and remembered, so a retry of the same id gets the
    # same answer from either store (TigerBeetle burns a failed transfer id for good).
    FAILED = "failed"


@dataclass(frozen=True)
class WalletBalance:
    """The seed's WalletBalanceVm: credit = available, debit = spent, historical = received.

    `held_minor`: money reserved by open holds (domain.holds). It has already left `credit`,
    which stays what the client may spend now (posted credits - posted debits - held); the
    three compared fields keep their meaning for clients from before holds.
    """

    key: WalletKey
    credit_minor: int
    debit_minor: int
    historical_credit_minor: int
    # Set on a point of a balance history: TigerBeetle's timestamp of the transfer after which
    # the wallet had this balance. Not part of equality (a balance is its three fields).
    as_of_tb_timestamp: int | None = field(default=None, compare=False)
    held_minor: int = 0

    @property
    def credit(self) -> Decimal:
        return from_minor_units(self.credit_minor, self.key.currency)

    @property
    def debit(self) -> Decimal:
        return from_minor_units(self.debit_minor, self.key.currency)

    @property
    def historical_credit(self) -> Decimal:
        return from_minor_units(self.historical_credit_minor, self.key.currency)

    @property
    def held(self) -> Decimal:
        return from_minor_units(self.held_minor, self.key.currency)

    def fields_minor(self) -> tuple[int, int, int]:
        """The three fields compared by shadow reads and reconciliation."""
        return (self.credit_minor, self.debit_minor, self.historical_credit_minor)


@dataclass(frozen=True)
class TransactionRecord:
    """One credit or debit as a client sees it, with its void if any."""

    transaction_id: str
    kind: TransactionKind
    key: WalletKey
    amount_minor: int
    state: TransactionState
    created_at: datetime
    failure_code: str = ""
    made_by: str = ""  # the authenticated principal that posted it ("" before it was kept)
    voided_at: datetime | None = None
    voided_by: str = ""
    void_reason: str = ""

    @property
    def amount(self) -> Decimal:
        return from_minor_units(self.amount_minor, self.key.currency)


@dataclass(frozen=True)
class WalletResult:
    """What a write answers: the transaction and the wallet's balance right after it.

    `replayed` is true when the id had already been applied and this is the original result
    (the API then answers 200 instead of 201).
    """

    transaction: TransactionRecord
    balance: WalletBalance
    replayed: bool = False


class WalletStore(Protocol):
    """One wallet store: the legacy MongoDB store or the TigerBeetle store.

    Every write is atomic and idempotent on its id: the same id with the same request answers
    the original result (`replayed=True`), with a different request `IdempotencyConflict`.
    Failures are `domain.errors.WalletError`s; an unreachable store is `StoreUnavailable`.
    """

    name: str

    def add_credit(
        self, key: WalletKey, amount_minor: int, transaction_id: str, *, made_by: str = ""
    ) -> WalletResult: ...

    def subtract_credit(
        self, key: WalletKey, amount_minor: int, reference_id: str, *, made_by: str = ""
    ) -> WalletResult: ...

    def void_transaction(
        self, transaction_id: str, *, voided_by: str, reason: str
    ) -> WalletResult: ...

    def post_batch(
        self, items: Sequence[BatchItem], *, atomic: bool, made_by: str = ""
    ) -> list[BatchOutcome]:
        """Many credits and debits in one call (`domain.batches`): one outcome per item, in
        order, each what the single write would answer. `atomic`: all apply or none, and the
        first refusal is raised (`domain.batches.refused_at`) with nothing posted."""
        ...

    def get_balance(self, key: WalletKey) -> WalletBalance: ...

    def get_balances(self, client_id: str) -> list[WalletBalance]: ...

    def get_transaction(self, transaction_id: str) -> TransactionRecord: ...

    def history(self, query: HistoryQuery) -> HistoryPage:
        """The wallet's balance after each transaction, newest first (`domain.history`)."""
        ...

    # Holds (domain.holds): reserve, capture all or part, release; idempotent on the hold id.
    def place_hold(
        self,
        key: WalletKey,
        amount_minor: int,
        hold_id: str,
        *,
        timeout_s: int,
        made_by: str = "",
    ) -> HoldResult: ...

    def capture_hold(
        self, hold_id: str, *, amount_minor: int | None = None, made_by: str = ""
    ) -> HoldResult: ...

    def release_hold(self, hold_id: str, *, made_by: str = "") -> HoldResult: ...

    def get_hold(self, hold_id: str) -> Hold: ...
