"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.api.contract.schemathesis_hooks): the one rule
JSON Schema cannot state, and the ledger's state, which no schema holds.

An amount may be no finer than the wallet's currency allows and at most 2^63-1 minor units;
the currency is a path parameter, so the body's schema cannot depend on it. The schema says
it in the amount's description and gives every currency's minor-unit digits in the currency
parameter's `x-minor-unit-digits`; this hook reads those digits from the schema (never from
the server's code) and fits a positive case's amount to them, so a schema-valid request is
one the server must accept (a hold's capture, whose currency is the hold's, to whole
units). Negative cases are left alone: the server refuses them anyway.

The ledger remembers every id for good, so the few short ids a generator favours ("0") would
make nearly every later write an idempotency conflict (409) and no credit would ever reach the
links to its transaction and void: a positive write gets an id of its own (the generated one
with a counter behind it), and a stated currency is the wallet's (another is 422
cross_currency by a rule the schema states in words). Replays and conflicts are specified by
tests/api/test_idempotency.py. A history query keeps no generated cursor and its `from`
before its `to` (`fitted_history_query`); a statement's period is in order and at most 366
days long (`fitted_statement_query`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import count
from typing import Any

import schemathesis
from schemathesis import GenerationMode

from domain.statements import STATEMENT_SPAN_MAX_DAYS

AMOUNT_MINOR_MAX = 2**63 - 1
ID_FIELDS = ("transaction_id", "reference_id", "hold_id")
ID_KEPT_LENGTH = 100
_ids = count()


def minor_unit_digits(case: Any) -> dict[str, int]:
    for parameter in case.operation.definition.raw.get("parameters", []):
        if parameter.get("name") == "currency" and parameter.get("in") == "path":
            return dict(parameter["schema"].get("x-minor-unit-digits", {}))
    return {}


def fitted(amount: Any, *, digits: int) -> Any:
    """The amount with no more fraction digits than `digits`, within the range; else "1"."""
    if isinstance(amount, bool) or not isinstance(amount, str | int | float):
        return amount
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return amount
    if not value.is_finite() or value.adjusted() > len(str(AMOUNT_MINOR_MAX)):
        return "1"
    truncated = value.quantize(Decimal(1).scaleb(-digits), rounding="ROUND_DOWN")
    if truncated <= 0 or truncated.scaleb(digits) > AMOUNT_MINOR_MAX:
        return "1"
    if isinstance(amount, str):
        return format(truncated, "f")
    return int(truncated) if digits == 0 or truncated == int(truncated) else format(truncated, "f")


def fitted_capture(amount: Any, *, digits_of: dict[str, int]) -> Any:
    """A capture's amount, in its hold's currency, which no request of it names: whole units
    (exact in every currency), within the range in the currency with the most digits."""
    whole = fitted(amount, digits=0)
    most_digits = max(digits_of.values(), default=0)
    if isinstance(whole, bool) or not isinstance(whole, str | int):
        return whole
    try:
        value = Decimal(str(whole))
    except InvalidOperation:
        return whole
    return "1" if value.is_finite() and value.scaleb(most_digits) > AMOUNT_MINOR_MAX else whole


def fitted_history_query(query: dict[str, Any]) -> None:
    """A history query's two rules across parameters, which the schema states in words: a
    cursor is only ever a page's own `next_cursor` (a generated one is 400 invalid_cursor),
    and `from` is earlier than `to` (else 400 invalid_time_range)."""
    query.pop("cursor", None)
    start, end = query.get("from"), query.get("to")
    if not (isinstance(start, str) and isinstance(end, str)):
        return
    try:
        in_order = datetime.fromisoformat(start.upper()) < datetime.fromisoformat(end.upper())
    except (ValueError, TypeError, OverflowError):
        return
    if not in_order:
        query.pop("to")


def fitted_statement_query(query: dict[str, Any]) -> None:
    """A statement's period rules across its two parameters, which the schema states in
    words: `from` earlier than `to` (else 400 invalid_time_range) and at most 366 days
    before it (else 400 statement_period_too_long): an out-of-rule `to` becomes a day after
    `from`."""
    start, end = query.get("from"), query.get("to")
    if not (isinstance(start, str) and isinstance(end, str)):
        return
    try:
        begin, finish = datetime.fromisoformat(start.upper()), datetime.fromisoformat(end.upper())
        if begin < finish <= begin + timedelta(days=STATEMENT_SPAN_MAX_DAYS):
            return
        query["to"] = (begin + timedelta(days=1)).isoformat()
    except (ValueError, TypeError, OverflowError):
        return


def batch_minor_unit_digits(case: Any) -> dict[str, int]:
    """The digits a batch item's currency states (the item schemas' `x-minor-unit-digits`)."""
    components = case.operation.schema.raw_schema.get("components", {}).get("schemas", {})
    item = components.get("BatchCreditItem", {}).get("properties", {})
    return dict(item.get("currency", {}).get("x-minor-unit-digits", {}))


def fit_batch(case: Any) -> None:
    """A positive batch's items, each fitted as a single write's body is: its amount to its
    currency's digits, its id one of its own (a batch refuses an id used twice in it). On a
    store that takes a batch item by item (CONTRACT_BATCH_ITEMS_MAX set: MongoDB, about 5 ms
    an item) the batch is cut to that many items: the coverage phase's 8189-item batch cost
    over two minutes there, and the limit is the same code on both stores (the TigerBeetle
    run posts it whole)."""
    items_max = int(os.environ.get("CONTRACT_BATCH_ITEMS_MAX", "0"))
    if items_max and isinstance(case.body.get("items"), list):
        del case.body["items"][items_max:]
    digits_of = batch_minor_unit_digits(case)
    for item in case.body.get("items") or []:
        if not isinstance(item, dict):
            continue
        digits = digits_of.get(str(item.get("currency", "")).upper())
        if item.get("kind") == "capture" and item.get("amount") is not None:
            item["amount"] = fitted_capture(item["amount"], digits_of=digits_of)
        elif digits is not None and "amount" in item:
            item["amount"] = fitted(item["amount"], digits=digits)
        for name in ID_FIELDS:
            if isinstance(item.get(name), str) and item[name]:
                item[name] = f"{item[name][:ID_KEPT_LENGTH]}~{next(_ids)}"


def fit_monitor(case: Any) -> None:
    """A monitor's line fitted to its currency's digits (the currency field's
    `x-minor-unit-digits`), as a write's amount is."""
    if not isinstance(case.body, dict):
        return
    components = case.operation.schema.raw_schema.get("components", {}).get("schemas", {})
    currency = components.get("MonitorRequest", {}).get("properties", {}).get("currency", {})
    digits = currency.get("x-minor-unit-digits", {}).get(str(case.body.get("currency", "")))
    if digits is not None and "threshold" in case.body:
        case.body["threshold"] = fitted(case.body["threshold"], digits=digits)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if case.operation.definition.raw.get("operationId") == "get_history" and isinstance(
        case.query, dict
    ):
        fitted_history_query(case.query)
    if case.operation.definition.raw.get("operationId") == "get_statement" and isinstance(
        case.query, dict
    ):
        fitted_statement_query(case.query)
    if isinstance(case.body, dict) and isinstance(case.body.get("items"), list):
        fit_batch(case)
        return case
    if case.operation.definition.raw.get("operationId") == "create_balance_monitor":
        fit_monitor(case)
        return case
    if isinstance(case.body, dict) and "amount" in case.body:
        fit_amount(case)
    return case


def fit_amount(case: Any) -> None:
    """A single write's amount fitted to its currency's digits (a capture's: `fitted_capture`)
    and a stated currency made the wallet's."""
    currency = str(case.path_parameters.get("currency", ""))
    digits = minor_unit_digits(case).get(currency.upper())
    if digits is None and "currency" not in case.path_parameters:
        if case.body["amount"] is not None:
            case.body["amount"] = fitted_capture(
                case.body["amount"], digits_of=batch_minor_unit_digits(case)
            )
        return
    if digits is not None and case.body["amount"] is not None:
        case.body["amount"] = fitted(case.body["amount"], digits=digits)
    if case.body.get("currency"):
        case.body["currency"] = currency
    for name in ID_FIELDS:
        if isinstance(case.body.get(name), str) and case.body[name]:
            case.body[name] = f"{case.body[name][:ID_KEPT_LENGTH]}~{next(_ids)}"
