"""Template filters of the back-office: money with its currency, TigerBeetle timestamps,
where a criterion's blocking cases are listed."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.urls import reverse

from backoffice import blocker_views, links
from backoffice.admin_base import format_money
from backoffice.charts import OPERATION_WORDS
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


@register.inclusion_tag("admin/migration/blocker_action.html", takes_context=True)
def blocker_action(context: template.Context, action: str) -> dict[str, object]:
    """`{% blocker_action blocker.action %}`: the button that mends a blocker, for one allowed
    to press it; for another, who may."""
    url_name, permission, label, who_may = blocker_views.ACTIONS[action]
    request = context["request"]
    return {
        "allowed": request.user.has_perm(permission),
        "url": reverse(url_name),
        "label": label,
        "who_may": who_may,
        "action": action,
        "next": request.get_full_path(),
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def operation_words(operation: str) -> str:
    """`{{ item.operation|operation_words }}`: "add_credit" -> "credit"."""
    return OPERATION_WORDS.get(operation, operation.replace("_", " "))
