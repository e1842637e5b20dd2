"""The OpenAPI schema is the contract: every rule the server enforces, stated where a client
(or a client generator, or schemathesis) can read it.

The rules are not restated by hand: the id rule's pattern is built from the same constants
`ledger.service.checked_id` judges with (and Python's own Unicode tables), the countries and
currencies are the codes `domain.countries` and `domain.money` accept, and every error
response lists the codes the operation can answer at that status. What JSON Schema cannot
say (an amount finer than the wallet's currency allows, or past its range, depends on the
currency in the path) is said in the amount's description, with each currency's minor-unit
digits in `x-minor-unit-digits`.

`add_links` (a drf-spectacular post-processing hook) adds the OpenAPI links between the
operations: a credit's answer leads to its transaction, its void, its wallet's balance and a
debit of the same wallet, so a stateful test reaches real transactions and voids.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from drf_spectacular.utils import OpenApiResponse

from api.serializers import VOID_REASON_MAX_LENGTH
from domain.countries import country_codes
from domain.holds import HOLD_TIMEOUT_MAX_S, HOLD_TIMEOUT_MIN_S
from domain.money import AMOUNT_TEXT_MAX_LENGTH, currency_exponent, wallet_currency_codes
from ledger.service import ID_FORBIDDEN_CATEGORIES, ID_FORBIDDEN_CHARACTERS, ID_MAX_LENGTH

UNICODE_LAST = 0x10FFFF
SURROGATES_FIRST, SURROGATES_LAST = 0xD800, 0xDFFF

# --- the id rule ----------------------------------------------------------------------------


def _class_body(code_points: Iterable[int]) -> str:
    """A regex character class's body for these code points, as ranges: `\\uXXXX` escapes in
    the Basic Multilingual Plane, the character itself beyond it (read alike by Python's `re`
    and by ECMA-262 with the `u` flag; JSON Schema validators use one or the other)."""

    def written(code_point: int) -> str:
        return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)

    points = sorted(set(code_points))
    parts: list[str] = []
    start = previous = points[0]
    for code_point in [*points[1:], -1]:
        if code_point == previous + 1:
            previous = code_point
            continue
        parts.append(
            written(start) if start == previous else f"{written(start)}-{written(previous)}"
        )
        start = previous = code_point
    return "".join(parts)


def _is_surrogate(code_point: int) -> bool:
    return SURROGATES_FIRST <= code_point <= SURROGATES_LAST


def _forbidden_in_ids() -> list[int]:
    """Lone surrogates (category Cs) are refused too, but a pattern cannot name them: they
    are no Unicode scalar values, and ECMA-262's `u` mode and Rust's regex refuse them (the
    description says so)."""
    return [
        code_point
        for code_point in range(UNICODE_LAST + 1)
        if not _is_surrogate(code_point)
        and (
            chr(code_point) in ID_FORBIDDEN_CHARACTERS
            or unicodedata.category(chr(code_point)) in ID_FORBIDDEN_CATEGORIES
        )
    ]


@functools.cache
def _whitespace() -> tuple[int, ...]:
    """What Python's `str.strip()` strips (and `str.isspace()` calls whitespace)."""
    return tuple(cp for cp in range(UNICODE_LAST + 1) if chr(cp).isspace())


@functools.cache
def id_pattern() -> str:
    """`checked_id`'s rule as a regex: 1 to ID_MAX_LENGTH characters, none of them '/' or of
    a forbidden Unicode category, the first and last not whitespace either."""
    forbidden = _forbidden_in_ids()
    inner = _class_body(forbidden)
    edge = _class_body([*forbidden, *_whitespace()])
    return f"^[^{edge}](?:[^{inner}]{{0,{ID_MAX_LENGTH - 2}}}[^{edge}])?$"


ID_RULE = (
    f"1 to {ID_MAX_LENGTH} characters, case- and byte-exact; no leading or trailing "
    "whitespace, no '/', no control characters (NUL, C0, DEL, C1), no invisible format "
    "characters (zero-width, bidi overrides, BOM), no lone surrogates, no line or paragraph "
    "separators. Else 400 validation_error naming the field."
)


def id_schema(*, blank_means_none: bool = False) -> dict[str, Any]:
    """The schema of an id; `blank_means_none`: the issuer, where "" means no issuer."""
    # The pattern carries the length too: no minLength/maxLength beside it, which test
    # generators fold into the pattern by rewriting it (schemathesis writes astral characters
    # back as Python's \U escapes, which ECMA-262 validators then refuse).
    if blank_means_none:
        return {
            "type": "string",
            "pattern": f"^$|{id_pattern()}",
            "description": f"Empty for no issuer, else an id: {ID_RULE}",
        }
    return {"type": "string", "pattern": id_pattern(), "description": ID_RULE}


# --- countries, currencies, amounts ---------------------------------------------------------


def country_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "enum": list(country_codes()),
        "description": "ISO 3166 alpha-2 or alpha-3 (answered as alpha-3); the server also "
        "reads them in lower case. Any other value is 400 unknown_country.",
    }


def currency_schema(*, blank_allowed: bool = False) -> dict[str, Any]:
    codes = list(wallet_currency_codes())
    return {
        "type": "string",
        "enum": ["", *codes] if blank_allowed else codes,
        "description": "ISO 4217 alphabetic code of a currency a wallet can hold (with a "
        "numeric code and a minor unit); the server also reads them in lower case. Any other "
        "value is 400 unknown_currency."
        + (" Empty or absent: not stated." if blank_allowed else ""),
        "x-minor-unit-digits": {code: currency_exponent(code) for code in codes},
    }


# A positive plain decimal: ASCII digits, an optional '.' and more digits, not all zeros.
AMOUNT_PATTERN = r"^(?:[0-9]*[1-9][0-9]*(?:\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"
# A balance or a posted amount as answered: never negative, the currency's digits.
ANSWERED_AMOUNT_PATTERN = r"^[0-9]+(?:\.[0-9]+)?$"
AMOUNT_RULE = (
    "A positive amount in the wallet's currency: a decimal string of ASCII digits with an "
    'optional "." and fraction digits ("10.50", "7"; at most '
    f"{AMOUNT_TEXT_MAX_LENGTH} characters), or a JSON number, read exactly from its literal "
    "text. Never finer than the currency's minor unit (`x-minor-unit-digits` of the currency: "
    'USD 2, so "1.005" is refused and "1.050" is 1.05; JPY 0; KWD 3) and at most 2^63-1 '
    "minor units (USD 92233720368547758.07): refused, never rounded, with 400 invalid_amount."
)


def amount_schema() -> dict[str, Any]:
    return {
        "oneOf": [
            {
                "type": "string",
                "pattern": AMOUNT_PATTERN,
                "maxLength": AMOUNT_TEXT_MAX_LENGTH,
                # Valid in every currency (a schema's example is sent as it is).
                "example": "10",
            },
            # OpenAPI 3.0 (JSON Schema draft 4): exclusiveMinimum is a flag on minimum.
            {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 2**63 - 1},
        ],
        "description": AMOUNT_RULE,
    }


def answered_amount_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": ANSWERED_AMOUNT_PATTERN,
        "example": "10.50",
        "description": "A decimal string with the currency's digits",
    }


@functools.cache
def void_reason_pattern() -> str:
    """At least one character that is not whitespace; no NUL (the reason is trimmed of
    surrounding whitespace, then must hold 1 to 1000 characters). Lone surrogates are
    refused too, unnamed, as in `id_pattern`."""
    never = _class_body([0])
    space = _class_body(_whitespace())
    kept = f"[^{never}{space}]"
    return f"^[{space}]*{kept}(?:[^{never}]{{0,{VOID_REASON_MAX_LENGTH - 2}}}{kept})?[{space}]*$"


def void_reason_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": void_reason_pattern(),
        "description": "Why the transaction is voided (kept with the void and shown to "
        "support): a JSON string, trimmed of surrounding whitespace, then 1 to "
        f"{VOID_REASON_MAX_LENGTH} characters, no NUL, no lone surrogates. Else 400 "
        "validation_error.",
    }


# --- error responses ------------------------------------------------------------------------

ERROR_DESCRIPTIONS = {
    400: "The request is not valid",
    401: "No valid API token",
    403: "The token's user lacks the operation's permission",
    404: "Not found",
    409: "Conflict with what the ledger holds (details.original: the stored transaction)",
    413: "The body is larger than the server accepts",
    415: "The body is not JSON",
    422: "Refused by a rule of the ledger",
    429: "Too many requests for this token (throttled), or too many refused tokens from this "
    "address (too_many_failed_authentications): retry after details.retry_after_s, also in "
    "the Retry-After header",
    503: "A dependency did not answer: retry with the same id",
}


# A 409 names what the id (or the transaction) already did: the stored transaction.
CONFLICT_DETAILS = {
    "type": "object",
    "properties": {
        "original": {
            "allOf": [{"$ref": "#/components/schemas/Transaction"}],
            "description": "The transaction as the ledger holds it: what the id did first "
            "(idempotency_conflict), or the voided transaction with who voided it, when and "
            "why (already_voided). Absent only when the store cannot name it.",
        }
    },
}


def error_schema(codes: Sequence[str], *, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape, `{"error": {"code", "message", "details"}}`, with the codes."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": list(codes)},
                    "message": {"type": "string"},
                    "details": details or {"type": "object"},
                },
            }
        },
    }


def error_responses(codes_by_status: dict[int, Sequence[str]]) -> dict[int, OpenApiResponse]:
    """An operation's error answers: each status with its codes, in the one error shape."""
    return {
        status: OpenApiResponse(
            error_schema(codes, details=CONFLICT_DETAILS if status == 409 else None),
            description=f"{ERROR_DESCRIPTIONS[status]}: {', '.join(codes)}",
        )
        for status, codes in sorted(codes_by_status.items())
    }


# --- links between operations ---------------------------------------------------------------

_WALLET_OF_RESULT = {
    "client_id": "$response.body#/balance/client_id",
    "country": "$response.body#/balance/country",
    "currency": "$response.body#/balance/currency",
}
_TRANSACTION_OF_RESULT = {"transaction_id": "$response.body#/transaction/transaction_id"}
_WRITE_LINKS = {
    "GetTransaction": {"operationId": "get_transaction", "parameters": _TRANSACTION_OF_RESULT},
    "VoidTransaction": {"operationId": "void_transaction", "parameters": _TRANSACTION_OF_RESULT},
    "GetBalance": {"operationId": "get_balance", "parameters": _WALLET_OF_RESULT},
    "GetBalances": {
        "operationId": "get_balances",
        "parameters": {"client_id": "$response.body#/balance/client_id"},
    },
    "AddCredit": {"operationId": "add_credit", "parameters": _WALLET_OF_RESULT},
    "SubtractCredit": {"operationId": "subtract_credit", "parameters": _WALLET_OF_RESULT},
}
_HOLD_OF_RESULT = {"hold_id": "$response.body#/hold/hold_id"}
_HOLD_LINKS = {
    "GetHold": {"operationId": "get_hold", "parameters": _HOLD_OF_RESULT},
    "CaptureHold": {"operationId": "capture_hold", "parameters": _HOLD_OF_RESULT},
    "ReleaseHold": {"operationId": "release_hold", "parameters": _HOLD_OF_RESULT},
    "GetBalance": {"operationId": "get_balance", "parameters": _WALLET_OF_RESULT},
}
# operationId -> status -> links of that answer.
LINKS: dict[str, dict[str, dict[str, Any]]] = {
    "add_credit": {"201": _WRITE_LINKS, "200": _WRITE_LINKS},
    "subtract_credit": {"201": _WRITE_LINKS, "200": _WRITE_LINKS},
    "void_transaction": {
        "200": {name: _WRITE_LINKS[name] for name in ("GetTransaction", "GetBalance")}
    },
    "place_hold": {"201": _HOLD_LINKS, "200": _HOLD_LINKS},
    "get_transaction": {
        "200": {
            "VoidTransaction": {
                "operationId": "void_transaction",
                "parameters": {"transaction_id": "$response.body#/transaction_id"},
            }
        }
    },
}
REQUEST_COMPONENTS = (
    "CreditRequest",
    "DebitRequest",
    "VoidRequest",
    "HoldRequest",
    "CaptureRequest",
    "ReleaseRequest",
    "BatchRequest",
    "BatchCreditItem",
    "BatchDebitItem",
    "BatchHoldItem",
    "BatchCaptureItem",
    "BatchReleaseItem",
    "SubscriptionRequest",
    "ReplayRequest",
    "MonitorRequest",
    "MonitorWalletRequest",
)
ANSWER_AMOUNTS = {
    "WalletBalance": ("credit", "debit", "historical_credit", "held"),
    "Transaction": ("amount",),
    "HistoryPoint": ("credit", "debit", "historical_credit", "held"),
    "Hold": ("amount", "captured"),
}
EXPIRES_IN_SCHEMA = {
    "type": "integer",
    "minimum": HOLD_TIMEOUT_MIN_S,
    "maximum": HOLD_TIMEOUT_MAX_S,
    "description": "How long the hold reserves its amount, in whole seconds (a JSON integer; "
    f"{HOLD_TIMEOUT_MIN_S} to {HOLD_TIMEOUT_MAX_S}, 30 days); then it expires by itself. "
    "Else 400 validation_error.",
}


def _field_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """Every request field's rule, by component and name: set whole, so nothing drf-spectacular
    derives from the serializer fields (a maxLength beside the pattern, blank as a `oneOf`)
    blurs it."""
    fields: dict[tuple[str, str], dict[str, Any]] = {}
    for component, id_name in (
        ("CreditRequest", "transaction_id"),
        ("DebitRequest", "reference_id"),
    ):
        fields[(component, id_name)] = id_schema()
        fields[(component, "amount")] = amount_schema()
        fields[(component, "issuer")] = {**id_schema(blank_means_none=True), "default": ""}
        fields[(component, "currency")] = {**currency_schema(blank_allowed=True), "default": ""}
    for component, id_name in (
        ("BatchCreditItem", "transaction_id"),
        ("BatchDebitItem", "reference_id"),
        ("BatchHoldItem", "hold_id"),
    ):
        fields[(component, id_name)] = id_schema()
        fields[(component, "client_id")] = id_schema()
        fields[(component, "country")] = country_schema()
        fields[(component, "currency")] = currency_schema()
        fields[(component, "amount")] = amount_schema()
        fields[(component, "issuer")] = {**id_schema(blank_means_none=True), "default": ""}
        fields[(component, "kind")] = {
            "type": "string",
            "enum": [component.removeprefix("Batch").removesuffix("Item").lower()],
        }
    fields[("BatchHoldItem", "expires_in_s")] = EXPIRES_IN_SCHEMA
    for component in ("BatchCaptureItem", "BatchReleaseItem"):
        fields[(component, "hold_id")] = id_schema()
        fields[(component, "kind")] = {
            "type": "string",
            "enum": [component.removeprefix("Batch").removesuffix("Item").lower()],
        }
    fields[("VoidRequest", "reason")] = void_reason_schema()
    fields[("HoldRequest", "hold_id")] = id_schema()
    fields[("HoldRequest", "amount")] = amount_schema()
    fields[("HoldRequest", "expires_in_s")] = EXPIRES_IN_SCHEMA
    fields[("HoldRequest", "issuer")] = {**id_schema(blank_means_none=True), "default": ""}
    fields[("HoldRequest", "currency")] = {**currency_schema(blank_allowed=True), "default": ""}
    fields[("CaptureRequest", "amount")] = {
        **amount_schema(),
        "description": "Absent or null: the whole hold. Else at most the hold's amount (422 "
        f"capture_exceeds_hold). {AMOUNT_RULE}",
        "nullable": True,
    }
    fields[("BatchCaptureItem", "amount")] = fields[("CaptureRequest", "amount")]
    fields[("MonitorRequest", "currency")] = currency_schema()
    fields[("MonitorRequest", "threshold")] = amount_schema()
    fields[("MonitorWalletRequest", "client_id")] = id_schema()
    fields[("MonitorWalletRequest", "country")] = country_schema()
    fields[("MonitorWalletRequest", "issuer")] = {**id_schema(blank_means_none=True), "default": ""}
    for component, names in ANSWER_AMOUNTS.items():
        for name in names:
            fields[(component, name)] = answered_amount_schema()
    return fields


def _parameter_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """Every path and query parameter's rule, by location and name (the URL converters say
    only "a string")."""
    return {
        ("path", "client_id"): id_schema(),
        ("path", "transaction_id"): id_schema(),
        ("path", "hold_id"): id_schema(),
        ("path", "country"): country_schema(),
        ("path", "currency"): currency_schema(),
        ("query", "issuer"): id_schema(blank_means_none=True),
    }


def complete_schema(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular post-processing, run when the schema is generated (the id rule's
    pattern takes a scan of Unicode, so never at import): the parameters' and fields' rules,
    the links above, and request bodies that name only their own fields (the server refuses
    any other with 400 validation_error)."""
    parameter_schemas = _parameter_schemas()
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                rule = parameter_schemas.get((parameter["in"], parameter["name"]))
                if rule is not None:
                    parameter["schema"] = rule
            for status, links in LINKS.get(operation.get("operationId"), {}).items():
                operation["responses"][status]["links"] = links
    schemas = result.get("components", {}).get("schemas", {})
    for (component, name), rule in _field_schemas().items():
        properties = schemas.get(component, {}).get("properties", {})
        if name in properties:
            properties[name] = rule
    for name in REQUEST_COMPONENTS:
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    return result
