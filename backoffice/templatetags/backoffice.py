"""Template filters of the back-office: money with its currency, TigerBeetle timestamps,
where a criterion's blocking cases are listed."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template

from backoffice import links
from backoffice.admin_base import format_money
from backoffice.selectors import STORE_NAMES

register = template.Library()


@register.filter
def money(amount_minor: int | None, currency: str) -> str:
    """`{{ row.amount_minor|money:wallet.currency }}` -> "$119.90"; a missing value is a dash."""
    if amount_minor is None or amount_minor == "":
        return "—"
    return format_money(int(amount_minor), currency)


@register.filter
def tb_time(tb_timestamp: int | None) -> datetime | None:
    """TigerBeetle's nanosecond timestamp as a datetime (for the `date` filter)."""
    return datetime.fromtimestamp(tb_timestamp / 1e9, tz=UTC) if tb_timestamp else None


@register.filter
def store_name(store: str) -> str:
    return STORE_NAMES.get(store, store)


@register.filter
def case_list_url(cases: str) -> str:
    """`{{ blocker.cases|case_list_url }}`: the admin list of a criterion's blocking cases."""
    return links.case_list_url(cases)
