"""A wallet's statement for a period: its opening balance, one line per point of its balance
history in the period (oldest first), its closing balance, and the sums that reconcile them.

Built on the balance history (`domain.history`), which every store answers alike in every
phase: the opening balance is the balance right after the last point before `from` (zero
when there is none), the closing balance the one right after the last point before `to`
(the opening's when the period holds none). Each line's effect on the four balance fields is
computed from its kind and amount, not read from the balances, so summing the effects onto
the opening and comparing with the closing is a real check (`Statement.reconciled`):

    received  (historical credit) += credits + voids of debits
    spent     (debit)             += debits + voids of credits + captured
    held                          += placed - released - expired - freed by captures
    available (credit)            = the change of received - spent - held

Two effects need the balance before the line: which way a void went (a void of a credit
adds to spent, one of a debit to received: design.md's balance fields) and how much of its
hold a capture freed (what was held before it, less after: a partial capture frees all of
its hold, the captured part spent, the rest back to available). TigerBeetle's opening-balance
point (a wallet the backfill imported) is an import: its effect is the whole change it made.
A legacy wallet MongoDB held before its transaction log has no point for what it held then:
its statement from before its first logged write does not reconcile, by that amount
(`differences`), on MongoDB; on TigerBeetle the opening-balance point holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.history import HistoryPoint, PointKind
from domain.ids import WalletKey
from domain.wallets import WalletBalance

STATEMENT_SPAN_MAX_DAYS = 366
STATEMENT_SPAN_MAX = timedelta(days=STATEMENT_SPAN_MAX_DAYS)
STATEMENT_LINES_MAX = 10_000  # points in one statement; a busier period is split by the client
FIELDS = ("available", "held", "spent", "received")


@dataclass(frozen=True)
class Effect:
    """A change of the four balance fields, in minor units."""

    available: int = 0
    held: int = 0
    spent: int = 0
    received: int = 0

    def __add__(self, other: Effect) -> Effect:
        return Effect(
            available=self.available + other.available,
            held=self.held + other.held,
            spent=self.spent + other.spent,
            received=self.received + other.received,
        )


def fields_of(balance: WalletBalance) -> Effect:
    """A balance as the four fields (an Effect from zero)."""
    return Effect(
        available=balance.credit_minor,
        held=balance.held_minor,
        spent=balance.debit_minor,
        received=balance.historical_credit_minor,
    )


def _difference(*, after: WalletBalance, before: WalletBalance) -> Effect:
    now, then = fields_of(after), fields_of(before)
    return Effect(
        available=now.available - then.available,
        held=now.held - then.held,
        spent=now.spent - then.spent,
        received=now.received - then.received,
    )


@dataclass(frozen=True)
class StatementLine:
    point: HistoryPoint
    effect: Effect
    # A void: what it voided ("credit" or "debit"); a capture: what it freed of its hold.
    voided: str = ""
    freed_minor: int = 0

    @property
    def label(self) -> str:
        if self.point.kind == PointKind.VOID:
            return f"void of a {self.voided}" if self.voided else "void"
        if self.point.kind == PointKind.OPENING_BALANCE:
            return "opening balance (imported)"
        return self.point.kind.value

    @property
    def kind_name(self) -> str:
        """The CSV's kind: the history's, a void's with what it voided."""
        if self.point.kind == PointKind.VOID and self.voided:
            return f"void_of_{self.voided}"
        return self.point.kind.value


@dataclass(frozen=True)
class StatementTotals:
    """The period's movements by kind, in minor units (each a positive sum)."""

    credits: int = 0
    debits: int = 0
    voided_credits: int = 0  # voids of credits: money out
    voided_debits: int = 0  # voids of debits: money back in
    held_placed: int = 0
    captured: int = 0  # spent by captures
    freed_by_captures: int = 0  # what captures took out of `held` (captured + given back)
    released: int = 0
    expired: int = 0
    imported: Effect = field(default_factory=Effect)  # TigerBeetle's opening-balance point


@dataclass(frozen=True)
class Statement:
    key: WalletKey
    from_time: datetime
    to_time: datetime
    opening: WalletBalance
    closing: WalletBalance
    lines: list[StatementLine]  # oldest first
    totals: StatementTotals

    @property
    def expected_closing(self) -> Effect:
        """The opening with every line's effect: what the closing must be."""
        expected = fields_of(self.opening)
        for line in self.lines:
            expected = expected + line.effect
        return expected

    @property
    def differences(self) -> dict[str, int]:
        """Closing minus expected, by field, where they differ (empty: reconciled)."""
        expected, closing = self.expected_closing, fields_of(self.closing)
        return {
            name: getattr(closing, name) - getattr(expected, name)
            for name in FIELDS
            if getattr(closing, name) != getattr(expected, name)
        }

    @property
    def reconciled(self) -> bool:
        return not self.differences


def _line(point: HistoryPoint, before: WalletBalance) -> StatementLine:
    """The point's line: its effect from its kind and amount (see the module's docstring)."""
    amount = point.amount_minor or 0
    kind = point.kind
    if kind == PointKind.CREDIT:
        return StatementLine(point, Effect(available=amount, received=amount))
    if kind == PointKind.DEBIT:
        return StatementLine(point, Effect(available=-amount, spent=amount))
    if kind == PointKind.VOID:
        if point.balance.debit_minor > before.debit_minor:  # a void of a credit is spent
            return StatementLine(point, Effect(available=-amount, spent=amount), voided="credit")
        return StatementLine(point, Effect(available=amount, received=amount), voided="debit")
    if kind == PointKind.HOLD:
        return StatementLine(point, Effect(available=-amount, held=amount))
    if kind == PointKind.CAPTURE:
        freed = before.held_minor - point.balance.held_minor
        effect = Effect(available=freed - amount, held=-freed, spent=amount)
        return StatementLine(point, effect, freed_minor=freed)
    if kind in (PointKind.RELEASE, PointKind.EXPIRE):
        return StatementLine(point, Effect(available=amount, held=-amount))
    assert kind == PointKind.OPENING_BALANCE, kind
    return StatementLine(point, _difference(after=point.balance, before=before))


def _totals(lines: list[StatementLine]) -> StatementTotals:
    sums: dict[str, int] = dict.fromkeys(
        (
            "credits",
            "debits",
            "voided_credits",
            "voided_debits",
            "held_placed",
            "captured",
            "freed_by_captures",
            "released",
            "expired",
        ),
        0,
    )
    imported = Effect()
    by_kind = {
        PointKind.CREDIT: "credits",
        PointKind.DEBIT: "debits",
        PointKind.HOLD: "held_placed",
        PointKind.CAPTURE: "captured",
        PointKind.RELEASE: "released",
        PointKind.EXPIRE: "expired",
    }
    for line in lines:
        kind, amount = line.point.kind, line.point.amount_minor or 0
        if kind == PointKind.OPENING_BALANCE:
            imported = imported + line.effect
        elif kind == PointKind.VOID:
            sums["voided_credits" if line.voided == "credit" else "voided_debits"] += amount
        else:
            sums[by_kind[kind]] += amount
        sums["freed_by_captures"] += line.freed_minor
    return StatementTotals(**sums, imported=imported)


def zero_balance(key: WalletKey) -> WalletBalance:
    return WalletBalance(key=key, credit_minor=0, debit_minor=0, historical_credit_minor=0)


def build_statement(
    key: WalletKey,
    *,
    period: tuple[datetime, datetime],
    before: HistoryPoint | None,
    points: list[HistoryPoint],
) -> Statement:
    """The statement of `points` (the period's, oldest first) after `before` (the last point
    before the period, None when the wallet had none)."""
    from_time, to_time = period
    assert from_time < to_time, "the period is checked before the history is read"
    assert all(from_time <= p.created_at < to_time for p in points), "points of the period"
    opening = before.balance if before is not None else zero_balance(key)
    lines, previous = [], opening
    for point in points:
        lines.append(_line(point, previous))
        previous = point.balance
    return Statement(
        key=key,
        from_time=from_time,
        to_time=to_time,
        opening=opening,
        closing=previous,
        lines=lines,
        totals=_totals(lines),
    )
