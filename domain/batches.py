"""Bulk writes (`POST /api/batches`): one batch of credits, debits and hold operations,
independent or all-or-nothing, idempotent per item as each single write is.

An item is one wallet write of a `kind`: a credit, a debit, or a hold operation (`hold`
places one, `capture` and `release` resolve one), each checked and answered as its single
endpoint does. Each item is exactly one TigerBeetle transfer (a hold its pending transfer, a
capture its post, a release its void), so a batch holds at most TigerBeetle's per-request
event limit: BATCH_ITEMS_MAX (a wallet's account set-up, for a wallet a batch meets first,
goes in requests of its own before the batch's one, as it does before a single write).

A batch names each hold at most once (placed, captured or released): a hold placed and
resolved in one batch is refused whole, `hold_repeated_in_batch` (docs/holds.md, "In a
batch").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from domain.errors import InvalidAmount, WalletError
from domain.holds import HoldResult
from domain.ids import WalletKey
from domain.money import MoneyError, to_minor_units
from domain.wallets import TransactionKind, WalletResult

# TigerBeetle's create_transfers limit (ledger.backends.base.BATCH_EVENTS_MAX, 1 MiB of
# 128-byte events less the request's trailer): one transfer per item, nothing else in it.
BATCH_ITEMS_MAX = 8189


class BatchItemKind(enum.StrEnum):
    """What an item does: the discriminator of the item schema."""

    CREDIT = "credit"
    DEBIT = "debit"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"

    @property
    def transaction_kind(self) -> TransactionKind:
        """A credit's or debit's kind of transaction (hold operations have none)."""
        return _TRANSACTION_KIND[self]

    @property
    def id_field(self) -> str:
        """The name the single endpoint gives the item's idempotency id."""
        return _ID_FIELD[self]

    @property
    def is_hold_operation(self) -> bool:
        return self in _HOLD_OPERATIONS

    @property
    def names_wallet(self) -> bool:
        """Whether the item names its wallet (a capture or release names only its hold)."""
        return self not in _RESOLUTIONS


# Plain lookups: an enum's own properties cost microseconds, 8,189 times a batch.
_TRANSACTION_KIND = {
    BatchItemKind.CREDIT: TransactionKind.CREDIT,
    BatchItemKind.DEBIT: TransactionKind.DEBIT,
}
_ID_FIELD = {
    BatchItemKind.CREDIT: "transaction_id",
    BatchItemKind.DEBIT: "reference_id",
    BatchItemKind.HOLD: "hold_id",
    BatchItemKind.CAPTURE: "hold_id",
    BatchItemKind.RELEASE: "hold_id",
}
_HOLD_OPERATIONS = frozenset({BatchItemKind.HOLD, BatchItemKind.CAPTURE, BatchItemKind.RELEASE})
_RESOLUTIONS = frozenset({BatchItemKind.CAPTURE, BatchItemKind.RELEASE})
_KIND_OF = {str(kind.value): kind for kind in BatchItemKind}


def item_kind(value: object) -> BatchItemKind | None:
    """The kind a client named (None for none of them): a dict lookup, where calling the
    enum by value costs tens of microseconds, 8,189 times a batch."""
    return _KIND_OF.get(value) if isinstance(value, str) else None


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    """One validated item under its client's id (`transaction_id`: a credit's transaction
    id, a debit's reference id, a hold operation's hold id).

    - credit, debit, hold: `key` and `amount_minor` (> 0); a hold also `timeout_s`.
    - capture: `capture_amount` (None: all of the hold), in the hold's currency, which only
      the store knows: it converts it (`capture_minor_of`) when it reads the hold.
    - capture, release: no `key` (the hold's wallet), `amount_minor` 0.
    """

    kind: BatchItemKind
    key: WalletKey | None
    amount_minor: int
    transaction_id: str
    timeout_s: int = 0
    capture_amount: Decimal | str | None = None

    def __post_init__(self) -> None:
        if self.kind.names_wallet:
            assert self.key is not None, "a credit, debit or hold names its wallet"
            assert self.amount_minor > 0, "the service refuses amounts that are not positive"
        else:
            assert self.key is None and self.amount_minor == 0, "a resolution names its hold"
        assert (self.timeout_s > 0) == (self.kind is BatchItemKind.HOLD), "a hold's life"

    @property
    def wallet(self) -> WalletKey:
        """The wallet a credit, debit or hold names."""
        assert self.key is not None, "only a resolution's wallet is its hold's"
        return self.key


def capture_minor_of(item: BatchItem, currency: str) -> int | None:
    """A capture item's amount in minor units of its hold's `currency` (None: all of it);
    InvalidAmount as the single capture answers (400, field `amount`)."""
    assert item.kind is BatchItemKind.CAPTURE
    if item.capture_amount is None:
        return None
    try:
        return to_minor_units(item.capture_amount, currency)
    except MoneyError as exc:
        raise InvalidAmount(str(exc), field="amount") from exc


# One item's outcome: the single write's result, or the refusal the single write would raise.
BatchOutcome = WalletResult | HoldResult | WalletError


def refused_at(index: int, error: WalletError) -> WalletError:
    """An all-or-nothing batch's refusal: the refusing item's own error, naming the item
    (0-based) in its details, so the client learns which item failed and why."""
    assert index >= 0
    error.details = {**error.details, "item": index}
    return error
