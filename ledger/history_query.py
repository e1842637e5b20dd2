"""The checks on a balance-history query from a client (`GET .../history`): each bad value gets
its own refusal, before any store is asked.

- `from` (inclusive) and `to` (exclusive): ISO 8601 times with a UTC offset (`Z`, `+02:00`);
  a time without one is refused rather than guessed. Every store keeps whole milliseconds, so
  a bound finer than that is taken up to the next millisecond (the same points either way).
  A query string decodes an unencoded `+` as a space: a space before the offset reads as `+`.
- `limit`: a whole number from 1 to HISTORY_LIMIT_MAX (default HISTORY_LIMIT_DEFAULT).
- `cursor`: a `next_cursor` of the same wallet's history (`domain.history`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from domain import errors
from domain.history import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    HistoryQuery,
    decode_cursor,
)
from domain.ids import WalletKey

TIME_LENGTH_MAX = 64
_SPACED_OFFSET = re.compile(r" (\d{2}:\d{2})$")
_RFC_3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(microsecond=0, tzinfo=UTC)


def history_query(
    key: WalletKey,
    *,
    from_time: str | None,
    to_time: str | None,
    limit: str | int | None,
    cursor: str | None,
) -> HistoryQuery:
    start = parse_time(from_time, field="from") if from_time else None
    end = parse_time(to_time, field="to") if to_time else None
    if start is not None and end is not None and start >= end:
        raise errors.InvalidTimeRange(
            f"`from` ({start.isoformat()}) must be earlier than `to` ({end.isoformat()}).",
            field="from",
        )
    return HistoryQuery(
        key=key,
        limit=parse_limit(limit),
        from_time=start,
        to_time=end,
        after=decode_cursor(key, cursor) if cursor is not None else None,
    )


def parse_time(value: str, *, field: str) -> datetime:
    """An aware UTC time (RFC 3339, as OpenAPI's date-time), taken up to a whole millisecond;
    one beyond what a datetime holds stands at its end (no history reaches there)."""
    text = _SPACED_OFFSET.sub(r"+\1", value) if len(value) <= TIME_LENGTH_MAX else ""
    if not _RFC_3339.fullmatch(text):
        raise errors.InvalidTime(
            f"`{field}` is not an ISO 8601 time with a UTC offset (e.g. 2026-12-01T00:00:00Z).",
            field=field,
        )
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        raise errors.InvalidTime(f"`{field}` is not a valid time.", field=field) from None
    try:
        moment = moment.astimezone(UTC)
        extra_us = moment.microsecond % 1000
        return moment + timedelta(microseconds=1000 - extra_us) if extra_us else moment
    except OverflowError:
        return _EARLIEST if moment.year == 1 else _LATEST


def parse_limit(value: str | int | None) -> int:
    if value is None or value == "":
        return HISTORY_LIMIT_DEFAULT
    text = str(value)
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= HISTORY_LIMIT_MAX:
        raise errors.InvalidLimit(
            f"The limit must be a whole number from 1 to {HISTORY_LIMIT_MAX}.", field="limit"
        )
    return int(text)
