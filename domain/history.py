"""A wallet's balance history, as both stores answer it: one point per transaction (a credit,
a debit, a void) and per hold event (placed, captured, released, expired), newest first, each
with the wallet's balance right after it (available credit, held, debit, historical credit).

Both stores order a wallet's transactions alike (MongoDB by the log's `wallet_seq`,
TigerBeetle by its timestamps, which the mirror and the copy back keep in that order) and
time them alike (the original write's time, whichever store took it), so the question
"the points older than this one, between these times" has one answer in every phase. A page
ends at a point; the next page starts below it. The cursor names that point by its
transaction (the client's id; for a void, the voided transaction's id and the mark "void";
for a hold event, the hold id and the event), not by a store's position, so a cursor written
by one store is read by the other. A cursor is bound to its wallet by a fingerprint of the
key.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from domain import errors
from domain.ids import WalletKey
from domain.wallets import WalletBalance

HISTORY_LIMIT_DEFAULT = 20
HISTORY_LIMIT_MAX = 200
CURSOR_VERSION = 1
CURSOR_LENGTH_MAX = 512  # characters of the opaque token: a transaction id is at most 128


class PointKind(enum.StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"
    VOID = "void"  # the compensating entry of a void; its transaction id is the voided one's
    # TigerBeetle only: a wallet imported by the backfill starts with its opening balance,
    # standing for everything MongoDB held before the import (no transaction id).
    OPENING_BALANCE = "opening_balance"
    # Hold events (domain.holds), named by their hold id: each changes `held` and the
    # available credit; a capture also posts its amount as spent.
    HOLD = "hold"  # placed: its amount leaves the available credit for `held`
    CAPTURE = "capture"  # captured (all or part): the captured amount is spent, the rest freed
    RELEASE = "release"  # released: all of it goes back to the available credit
    EXPIRE = "expire"  # expired by itself: as a release, at its expiry time


HOLD_EVENTS = frozenset({PointKind.HOLD, PointKind.CAPTURE, PointKind.RELEASE, PointKind.EXPIRE})


@dataclass(frozen=True)
class PointRef:
    """Which point a cursor stands at: its transaction id and whether it is the void; for a
    hold event, the hold id and the event."""

    transaction_id: str
    void: bool
    hold_event: PointKind | None = None


@dataclass(frozen=True)
class HistoryPoint:
    transaction_id: str | None  # None for an opening balance and a hold event
    kind: PointKind
    amount_minor: int | None  # None only for an opening balance
    created_at: datetime  # the original write's time (a void's: when it was voided)
    balance: WalletBalance  # right after this transaction (held_minor included)
    hold_id: str | None = None  # set exactly on a hold event

    def ref(self) -> PointRef | None:
        if self.hold_id is not None:
            return PointRef(transaction_id=self.hold_id, void=False, hold_event=self.kind)
        if self.transaction_id is None:
            return None
        return PointRef(transaction_id=self.transaction_id, void=self.kind == PointKind.VOID)


@dataclass(frozen=True)
class HistoryQuery:
    """Points with from_time <= created_at < to_time (either bound optional), older than
    `after` (a point of the previous page), newest first, at most `limit`."""

    key: WalletKey
    limit: int = HISTORY_LIMIT_DEFAULT
    from_time: datetime | None = None
    to_time: datetime | None = None
    after: PointRef | None = None

    def __post_init__(self) -> None:
        assert 1 <= self.limit <= HISTORY_LIMIT_MAX, "the service bounds the limit"
        if self.from_time is not None and self.to_time is not None:
            assert self.from_time < self.to_time, "the service refuses an empty range"

    def within(self, moment: datetime) -> bool:
        if self.from_time is not None and moment < self.from_time:
            return False
        return self.to_time is None or moment < self.to_time

    def below_range(self, moment: datetime) -> bool:
        """Older than the range: every older point is too (times follow the order)."""
        return self.from_time is not None and moment < self.from_time


@dataclass(frozen=True)
class HistoryPage:
    key: WalletKey  # normalised (alpha-3 country, upper-case currency)
    points: list[HistoryPoint]
    has_more: bool  # older points in the range exist

    @classmethod
    def of(cls, found: list[HistoryPoint], query: HistoryQuery) -> HistoryPage:
        """A page from up to limit + 1 points found (the extra one says there are more)."""
        return cls(key=query.key, points=found[: query.limit], has_more=len(found) > query.limit)


def wallet_fingerprint(key: WalletKey) -> str:
    return hashlib.sha256(repr(key.column_values()).encode()).hexdigest()[:16]


def encode_cursor(key: WalletKey, ref: PointRef) -> str:
    body = {"v": CURSOR_VERSION, "w": wallet_fingerprint(key), "t": ref.transaction_id}
    if ref.void:
        body["void"] = True
    if ref.hold_event is not None:
        body["hold"] = ref.hold_event.value
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(key: WalletKey, cursor: str) -> PointRef:
    """The point a cursor of this wallet names; InvalidCursor for anything else."""
    if not cursor or len(cursor) > CURSOR_LENGTH_MAX:
        raise errors.InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise errors.InvalidCursor() from None
    if (
        not isinstance(body, dict)
        or body.get("v") != CURSOR_VERSION
        or not isinstance(body.get("t"), str)
        or not body["t"]
        or body.get("void", False) not in (True, False)
        or body.get("hold", PointKind.HOLD.value) not in [kind.value for kind in HOLD_EVENTS]
    ):
        raise errors.InvalidCursor()
    if body.get("w") != wallet_fingerprint(key):
        raise errors.InvalidCursor("The cursor belongs to another wallet's history.")
    hold_event = PointKind(body["hold"]) if "hold" in body else None
    return PointRef(
        transaction_id=body["t"], void=bool(body.get("void", False)), hold_event=hold_event
    )
