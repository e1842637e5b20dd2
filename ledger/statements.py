"""A wallet's statement (`domain.statements`) read from a store's balance history, and its CSV.

The period's checks come before any store is asked, each with its own refusal (400):
`from` and `to` are required ISO 8601 times with a UTC offset (`ledger.history_query`'s
rule: invalid_time naming the field), `from` earlier than `to` (invalid_time_range), at most
STATEMENT_SPAN_MAX_DAYS apart (statement_period_too_long). The history is then read newest
first, HISTORY_LIMIT_MAX points a page, by cursor, at most STATEMENT_LINES_MAX points
(statement_too_large beyond), and one more page of one point for the opening balance. A
page is a read of the store the phase routes to; the pages name their points by
transaction (`domain.history`), so a statement read across a phase change stays one
history.

The CSV: a header row, a `period_opening` row (the balance at `from`), one row per point
of the period oldest first, a `period_closing` row (the balance at `to`, with the period's
change in the change columns). Amounts are decimal strings in the wallet's currency (the
`currency` column), never floats; a change is signed.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from domain import errors
from domain.history import HISTORY_LIMIT_MAX, HistoryPoint, HistoryQuery, PointRef
from domain.ids import WalletKey
from domain.money import from_minor_units
from domain.statements import (
    STATEMENT_LINES_MAX,
    STATEMENT_SPAN_MAX,
    STATEMENT_SPAN_MAX_DAYS,
    Effect,
    Statement,
    build_statement,
    fields_of,
)
from domain.wallets import WalletStore
from ledger.history_query import parse_time

_PAGES_MAX = STATEMENT_LINES_MAX // HISTORY_LIMIT_MAX + 1
CSV_HEADER = (
    "time",
    "kind",
    "transaction_id",
    "hold_id",
    "amount",
    "available_change",
    "held_change",
    "available",
    "held",
    "spent",
    "received",
    "currency",
)


def statement_period(*, from_time: str | None, to_time: str | None) -> tuple[datetime, datetime]:
    """The period asked for, checked: both bounds, in order, at most the longest span."""
    bounds = []
    for name, value in (("from", from_time), ("to", to_time)):
        if not value:
            raise errors.InvalidTime(
                f"A statement needs `{name}`: an ISO 8601 time with a UTC offset "
                "(e.g. 2026-12-01T00:00:00Z).",
                field=name,
            )
        bounds.append(parse_time(value, field=name))
    start, end = bounds
    if start >= end:
        raise errors.InvalidTimeRange(
            f"`from` ({start.isoformat()}) must be earlier than `to` ({end.isoformat()}).",
            field="from",
        )
    if end - start > STATEMENT_SPAN_MAX:
        raise errors.StatementPeriodTooLong(
            f"A statement covers at most {STATEMENT_SPAN_MAX_DAYS} days; "
            f"{start.isoformat()} to {end.isoformat()} is longer.",
            field="to",
        )
    return start, end


def wallet_statement(
    store: WalletStore, key: WalletKey, *, period: tuple[datetime, datetime]
) -> Statement:
    """The wallet's statement for the (checked) period, from `store`'s balance history.
    Raises WalletNotFound, StoreUnavailable as the history does; StatementTooLarge past
    STATEMENT_LINES_MAX points."""
    from_time, to_time = period
    before = store.history(HistoryQuery(key=key, limit=1, to_time=from_time)).points
    points: list[HistoryPoint] = []
    after: PointRef | None = None
    for _ in range(_PAGES_MAX):
        page = store.history(
            HistoryQuery(
                key=key,
                limit=HISTORY_LIMIT_MAX,
                from_time=from_time,
                to_time=to_time,
                after=after,
            )
        )
        points += page.points
        if len(points) > STATEMENT_LINES_MAX:
            break
        if not page.has_more:
            return build_statement(
                key,
                period=period,
                before=before[0] if before else None,
                points=list(reversed(points)),
            )
        after = page.points[-1].ref()
        assert after is not None, "only an opening balance has no ref, and it is the oldest"
    raise errors.StatementTooLarge(
        f"The period holds more than {STATEMENT_LINES_MAX} transactions and hold events; "
        "ask for a shorter one.",
        field="from",
    )


def _time(moment: datetime) -> str:
    """UTC, to the millisecond every store keeps, with `Z`: as the API answers times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(amount_minor: int | None, currency: str) -> str:
    return "" if amount_minor is None else format(from_minor_units(amount_minor, currency), "f")


def _balance_cells(balance: Effect, currency: str) -> list[str]:
    return [
        _money(value, currency)
        for value in (balance.available, balance.held, balance.spent, balance.received)
    ]


def statement_csv(statement: Statement) -> str:
    """The statement as CSV text (see the module's docstring)."""
    currency = statement.key.currency
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    opening, closing = fields_of(statement.opening), fields_of(statement.closing)
    writer.writerow(
        [
            _time(statement.from_time),
            "period_opening",
            "",
            "",
            "",
            "",
            "",
            *_balance_cells(opening, currency),
            currency,
        ]
    )
    for line in statement.lines:
        point = line.point
        writer.writerow(
            [
                _time(point.created_at),
                line.kind_name,
                point.transaction_id or "",
                point.hold_id or "",
                _money(point.amount_minor, currency),
                _money(line.effect.available, currency),
                _money(line.effect.held, currency),
                *_balance_cells(fields_of(point.balance), currency),
                currency,
            ]
        )
    writer.writerow(
        [
            _time(statement.to_time),
            "period_closing",
            "",
            "",
            "",
            _money(closing.available - opening.available, currency),
            _money(closing.held - opening.held, currency),
            *_balance_cells(closing, currency),
            currency,
        ]
    )
    return out.getvalue()


def statement_filename(statement: Statement) -> str:
    """statement-<client>-<country>-<currency>-<from>-<to>.csv, safe in a header."""
    key = statement.key
    parts = [key.client_id, key.country, key.currency, *([key.issuer] if key.issuer else [])]
    stamp = f"{statement.from_time:%Y%m%dT%H%M%SZ}-{statement.to_time:%Y%m%dT%H%M%SZ}"
    name = "-".join(parts) + "-" + stamp
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return f"statement-{safe}.csv"
