"""Holds: money reserved on a wallet under a client-chosen id, then captured (all or part) or
released, or expired by itself.

Why a model of its own: a hold is the authorisation half of a card-style payment. Its money
leaves the wallet's available credit the moment it is placed (a debit racing it cannot spend
it), and comes back when the hold is released, expires, or is captured for less than it
reserved. On TigerBeetle a hold is a pending transfer with a timeout (captured by posting it,
released by voiding it, expired by the cluster); on MongoDB a document in its own collection,
written in the same transaction as the wallet's `held` amount.

Every operation is idempotent on the hold id: placing the same hold again, capturing it again
for the same amount, releasing it again answer the hold as it is (`replayed=True`); a hold id
reused for another wallet, amount or expiry is an idempotency conflict; a capture or release
of a hold that is no longer open (otherwise) is `HoldNotOpen`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.ids import WalletKey
from domain.money import from_minor_units
from domain.wallets import WalletBalance

# TigerBeetle's timeout is a u32 of seconds; a hold lives at most 30 days (card schemes'
# longest authorisations), and at least a second (TigerBeetle's resolution).
HOLD_TIMEOUT_MIN_S = 1
HOLD_TIMEOUT_MAX_S = 30 * 24 * 3600


class HoldState(enum.StrEnum):
    OPEN = "open"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"
    # Refused when placed (insufficient funds) and remembered, so a retry of the id is refused
    # alike by either store (TigerBeetle burns a failed transfer id for good).
    FAILED = "failed"


@dataclass(frozen=True)
class Hold:
    hold_id: str
    key: WalletKey
    amount_minor: int
    captured_minor: int
    state: HoldState
    timeout_s: int
    created_at: datetime
    expires_at: datetime
    made_by: str = ""
    resolved_at: datetime | None = None  # captured, released or expired
    resolved_by: str = ""  # who captured or released it ("" for an expiry)
    failure_code: str = ""

    @property
    def amount(self) -> Decimal:
        return from_minor_units(self.amount_minor, self.key.currency)

    @property
    def captured(self) -> Decimal:
        return from_minor_units(self.captured_minor, self.key.currency)

    def open_at(self, now: datetime) -> bool:
        """Whether the hold still reserves its money at `now`."""
        return self.state == HoldState.OPEN and now < self.expires_at


@dataclass(frozen=True)
class HoldResult:
    """What a hold operation answers: the hold, and its wallet's balance right after.

    A replay answers the hold as it is now and the wallet's balance now."""

    hold: Hold
    balance: WalletBalance
    replayed: bool = False
