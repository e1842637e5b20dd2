"""The statement's reconciliation is a check, not a restatement: each line's effect comes from
its kind and amount, so a balance that does not follow from them shows as a difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.history import HistoryPoint, PointKind
from domain.ids import WalletKey
from domain.statements import Effect, build_statement, fields_of
from domain.wallets import WalletBalance

KEY = WalletKey(client_id="client-1", country="USA", currency="USD", issuer=None)
START = datetime(2026, 12, 1, tzinfo=UTC)


def balance(available: int, *, held: int = 0, spent: int = 0, received: int = 0) -> WalletBalance:
    return WalletBalance(
        key=KEY,
        credit_minor=available,
        debit_minor=spent,
        historical_credit_minor=received,
        held_minor=held,
    )


def point(minute: int, kind: PointKind, amount: int, after: WalletBalance) -> HistoryPoint:
    hold = kind in (PointKind.HOLD, PointKind.CAPTURE, PointKind.RELEASE, PointKind.EXPIRE)
    return HistoryPoint(
        transaction_id=None if hold else f"tx-{minute}",
        kind=kind,
        amount_minor=amount,
        created_at=START + timedelta(minutes=minute),
        balance=after,
        hold_id=f"hold-{minute}" if hold else None,
    )


def test_credits_debits_voids_and_a_partial_capture_reconcile() -> None:
    points = [
        point(1, PointKind.CREDIT, 10_000, balance(10_000, received=10_000)),
        point(2, PointKind.DEBIT, 2_000, balance(8_000, spent=2_000, received=10_000)),
        point(3, PointKind.VOID, 2_000, balance(10_000, spent=2_000, received=12_000)),
        point(4, PointKind.HOLD, 3_000, balance(7_000, held=3_000, spent=2_000, received=12_000)),
        point(5, PointKind.CAPTURE, 1_000, balance(9_000, spent=3_000, received=12_000)),
    ]

    built = build_statement(
        KEY, period=(START, START + timedelta(days=1)), before=None, points=points
    )

    assert built.reconciled
    assert built.lines[2].voided == "debit" and built.lines[4].freed_minor == 3_000
    assert (built.totals.credits, built.totals.voided_debits, built.totals.captured) == (
        10_000,
        2_000,
        1_000,
    )
    assert built.expected_closing == fields_of(built.closing) == Effect(9_000, 0, 3_000, 12_000)


def test_a_balance_that_does_not_follow_from_the_amounts_is_a_difference() -> None:
    opening = point(0, PointKind.CREDIT, 5_000, balance(5_000, received=5_000))
    points = [point(1, PointKind.CREDIT, 1_000, balance(6_500, received=6_500))]

    built = build_statement(
        KEY, period=(START, START + timedelta(days=1)), before=opening, points=points
    )

    assert not built.reconciled
    assert built.differences == {"available": 500, "received": 500}


def test_an_empty_period_closes_at_its_opening() -> None:
    opening = point(0, PointKind.CREDIT, 5_000, balance(5_000, received=5_000))

    built = build_statement(
        KEY, period=(START, START + timedelta(days=1)), before=opening, points=[]
    )

    assert built.reconciled and built.closing == built.opening == opening.balance
    assert built.lines == []
