"""`POST /api/batches`: up to BATCH_ITEMS_MAX credits, debits and hold operations in one call.

The view reads and answers a batch without DRF's per-field serializers: at 8,189 items their
cost alone was larger than the ledger's (the serializers below only describe the body and the
answer in the OpenAPI schema). The body's shape is checked here (a wrong shape is 400 for the
whole batch, naming the item and field); each item's values are checked by the service as a
single write's are. An item answers exactly what its single endpoint would: its status and
that endpoint's body (a result, or the error in the one error shape).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.errors import wallet_error_body
from api.hold_serializers import ExpiresInField, HoldSerializer
from api.hold_views import CAPTURE_HOLDS, PLACE_HOLDS, RELEASE_HOLDS
from api.permissions import CREDIT_WALLETS, DEBIT_WALLETS, POST_BATCHES
from api.schema import error_responses
from api.views import AMOUNT_BODY_REFUSALS, wallet_service
from domain import errors
from domain.batches import BATCH_ITEMS_MAX, BatchItemKind, BatchOutcome, item_kind
from domain.holds import Hold, HoldResult
from domain.money import currency_exponent
from domain.wallets import TransactionRecord, WalletBalance, WalletResult

# The fields of each kind of item; `issuer` may be left out (no issuer), and a capture's
# `amount` (all of the hold).
_WALLET_FIELDS = frozenset({"kind", "client_id", "country", "currency", "issuer", "amount"})
_ITEM_FIELDS = {
    BatchItemKind.CREDIT: _WALLET_FIELDS | {"transaction_id"},
    BatchItemKind.DEBIT: _WALLET_FIELDS | {"reference_id"},
    BatchItemKind.HOLD: _WALLET_FIELDS | {"hold_id", "expires_in_s"},
    BatchItemKind.CAPTURE: frozenset({"kind", "hold_id", "amount"}),
    BatchItemKind.RELEASE: frozenset({"kind", "hold_id"}),
}
_TEXT_FIELDS = ("client_id", "country", "currency")
# Each kind needs its single endpoint's permission: a batch never lets a caller do what it
# could not do one by one.
_KIND_PERMISSIONS = {
    BatchItemKind.CREDIT: CREDIT_WALLETS,
    BatchItemKind.DEBIT: DEBIT_WALLETS,
    BatchItemKind.HOLD: PLACE_HOLDS,
    BatchItemKind.CAPTURE: CAPTURE_HOLDS,
    BatchItemKind.RELEASE: RELEASE_HOLDS,
}


# --- the schema's description of the body and the answer --------------------------------------


class _BatchItemBase(s.RequestBody):
    client_id = s.IdField()
    country = serializers.CharField(help_text="ISO 3166 alpha-2, alpha-3 or numeric")
    currency = serializers.CharField(help_text="the wallet's ISO 4217 currency")
    issuer = s.IssuerField()
    amount = s.AmountField()


class BatchCreditItem(_BatchItemBase):
    kind = serializers.ChoiceField(choices=["credit"])
    transaction_id = s.IdField()


class BatchDebitItem(_BatchItemBase):
    kind = serializers.ChoiceField(choices=["debit"])
    reference_id = s.IdField()


class BatchHoldItem(_BatchItemBase):
    """POST .../holds as an item (its stated `currency` is the wallet's here)."""

    kind = serializers.ChoiceField(choices=["hold"])
    hold_id = s.IdField()
    expires_in_s = ExpiresInField(help_text="whole seconds, 1 to 2592000 (30 days)")


class BatchCaptureItem(s.RequestBody):
    """POST /api/holds/{hold_id}/capture as an item."""

    kind = serializers.ChoiceField(choices=["capture"])
    hold_id = s.IdField()
    amount = s.AmountField(
        required=False, allow_null=True, help_text="at most the hold's; left out: all of it"
    )


class BatchReleaseItem(s.RequestBody):
    """POST /api/holds/{hold_id}/release as an item."""

    kind = serializers.ChoiceField(choices=["release"])
    hold_id = s.IdField()


_ITEM_SCHEMA = PolymorphicProxySerializer(
    component_name="BatchItem",
    serializers={
        "credit": BatchCreditItem,
        "debit": BatchDebitItem,
        "hold": BatchHoldItem,
        "capture": BatchCaptureItem,
        "release": BatchReleaseItem,
    },
    resource_type_field_name="kind",
    many=False,
)


class BatchRequest(s.RequestBody):
    atomic = serializers.BooleanField(
        help_text="true: every item applies or none (the first refusal answers for the "
        "batch, naming its item in details.item); false: each item on its own"
    )
    items = serializers.ListField(
        child=_ITEM_SCHEMA,  # a schema-only proxy: the view never runs this serializer
        min_length=1,
        max_length=BATCH_ITEMS_MAX,
        help_text=f"1 to {BATCH_ITEMS_MAX} items (TigerBeetle's per-request limit: each "
        "item is one transfer of the batch's one request); each id at most once per batch, "
        "each hold at most once (400 hold_repeated_in_batch)",
    )


class BatchItemResult(serializers.Serializer):
    status = serializers.IntegerField(
        help_text="the status the item's single endpoint would answer: 201 posted, 200 "
        "replayed, else its error's (404, 409, 422)"
    )
    transaction = s.TransactionSerializer(required=False, help_text="a credit's or debit's")
    hold = HoldSerializer(required=False, help_text="a hold operation's: the hold after it")
    balance = s.WalletBalanceSerializer(required=False)
    replayed = serializers.BooleanField(required=False)
    error = s.ErrorDetailSerializer(required=False)


class BatchResult(serializers.Serializer):
    atomic = serializers.BooleanField()
    results = BatchItemResult(many=True, help_text="one per item, in order")


BATCH_ERRORS = error_responses(
    {
        400: [*AMOUNT_BODY_REFUSALS, "hold_repeated_in_batch"],
        401: ["not_authenticated", "authentication_failed"],
        403: ["permission_denied"],
        404: ["wallet_not_found", "hold_not_found", "not_found"],
        409: ["idempotency_conflict", "hold_not_open"],
        413: ["request_too_large"],
        415: ["unsupported_media_type"],
        422: [
            "insufficient_funds",
            "cross_currency",
            "balance_limit_exceeded",
            "capture_exceeds_hold",
        ],
        429: ["throttled", "too_many_failed_authentications"],
        503: ["store_unavailable", "writes_paused", "database_unavailable"],
    }
)


# --- the view ----------------------------------------------------------------------------------


class BatchesView(APIView):
    """POST /api/batches (needs post_batches, and each kind of item's single endpoint's
    permission: credit_wallets, debit_wallets, add / capture / release_wallethold)."""

    required_permissions = (POST_BATCHES,)

    @extend_schema(
        operation_id="post_batch",
        summary=f"Post 1 to {BATCH_ITEMS_MAX} credits, debits and hold operations in one call",
        description=(
            "Needs the post_batches permission, and the permission of each kind of item's "
            "single endpoint (credit_wallets, debit_wallets, add_wallethold, "
            "capture_wallethold, release_wallethold; 403 permission_denied otherwise). "
            "Hold items (hold, capture, release) answer what POST .../holds, "
            ".../capture and .../release answer, `hold` in place of `transaction`; a "
            "batch names each hold at most once (400 hold_repeated_in_batch, details.item "
            "the second). Each item is "
            "idempotent on its id exactly as its single endpoint: resending the batch, or "
            "any item alone, answers the original result; an id reused with other content "
            "is idempotency_conflict. atomic=false: 200, one result per item in order, each "
            "the single endpoint's status and body. atomic=true: 201 (200 when every item "
            "was a replay) with every item applied, or the first refusing item's error with "
            "its index in details.item and nothing of the batch applied (a refused debit is "
            "remembered as refused, as a single one is, and a wallet the batch would have "
            "created does not exist). A batch with an item "
            "its single endpoint would refuse with 400 (its shape, id, country, currency "
            "or amount), or with an id used twice, is refused whole with that 400, "
            "details.item naming the item, before anything is written."
        ),
        request=BatchRequest,
        responses={
            200: OpenApiResponse(BatchResult, description="independent, or all replayed"),
            201: OpenApiResponse(BatchResult, description="all-or-nothing, posted now"),
            **BATCH_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        atomic, items = _parsed_body(request.data)
        _check_kind_permissions(request, items)
        outcomes = wallet_service().post_batch(
            items=items, atomic=atomic, made_by=request.user.get_username()
        )
        results = [_rendered_outcome(outcome) for outcome in outcomes]
        answer_status: int = status.HTTP_200_OK
        if atomic and any(result["status"] == status.HTTP_201_CREATED for result in results):
            answer_status = status.HTTP_201_CREATED
        return Response({"atomic": atomic, "results": results}, status=answer_status)


def _check_kind_permissions(request: Request, items: list[dict[str, Any]]) -> None:
    """403 unless the caller holds every permission the batch's kinds of item need."""
    kinds = {item["kind"] for item in items}
    if not request.user.has_perms([_KIND_PERMISSIONS[kind] for kind in kinds]):
        raise PermissionDenied("Your account lacks the permission of a kind of item in this batch.")


# --- reading the body ----------------------------------------------------------------------


def _parsed_body(data: Any) -> tuple[bool, list[dict[str, Any]]]:
    """The body's shape, checked: (atomic, items as dicts of their fields)."""
    if not isinstance(data, Mapping):
        raise errors.ValidationFailed("The body must be a JSON object.", field="body")
    unknown = sorted(str(name) for name in data if name not in ("atomic", "items"))
    if unknown:
        raise errors.ValidationFailed(f"Not a field of this request: {unknown}.", field=unknown[0])
    atomic = data.get("atomic")
    if not isinstance(atomic, bool):
        raise errors.ValidationFailed("atomic must be true or false.", field="atomic")
    items = data.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_ITEMS_MAX:
        raise errors.ValidationFailed(
            f"items must be a list of 1 to {BATCH_ITEMS_MAX} items.", field="items"
        )
    return atomic, [_parsed_item(index, item) for index, item in enumerate(items)]


def _parsed_item(index: int, item: Any) -> dict[str, Any]:
    where = f"items[{index}]"
    if not isinstance(item, Mapping):
        raise errors.ValidationFailed(f"{where} must be an object.", field=where, item=index)
    kind = item_kind(item.get("kind"))
    if kind is None:
        raise errors.ValidationFailed(
            f"{where}.kind must be one of {[str(k) for k in BatchItemKind]}.",
            field=f"{where}.kind",
            item=index,
        )
    fields = _ITEM_FIELDS[kind]
    for name in item:
        if name not in fields:
            raise errors.ValidationFailed(
                f"{where}.{name} is not a field of a {kind.value} item.",
                field=f"{where}.{name}",
                item=index,
            )
    if not kind.names_wallet:
        return _parsed_resolution(index, item, kind)
    if kind is BatchItemKind.HOLD:
        expires_in_s = item.get("expires_in_s")
        if isinstance(expires_in_s, bool) or not isinstance(expires_in_s, int):
            raise errors.ValidationFailed(
                f"{where}.expires_in_s must be a JSON integer of seconds.",
                field=f"{where}.expires_in_s",
                item=index,
            )
    for name in (*_TEXT_FIELDS, kind.id_field):
        if not isinstance(item.get(name), str):
            raise errors.ValidationFailed(
                f"{where}.{name} must be a JSON string.", field=f"{where}.{name}", item=index
            )
    issuer = item.get("issuer", "")
    if not isinstance(issuer, str):
        raise errors.ValidationFailed(
            f"{where}.issuer must be a JSON string.", field=f"{where}.issuer", item=index
        )
    amount = item.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, str | Decimal | int):
        raise errors.ValidationFailed(
            f'{where}.amount: give the amount as a decimal string, e.g. "10.50".',
            field=f"{where}.amount",
            item=index,
        )
    return {**item, "kind": kind, "issuer": issuer or None}


def _parsed_resolution(index: int, item: Mapping[str, Any], kind: BatchItemKind) -> dict[str, Any]:
    """A capture or release item: its hold id, and a capture's amount (null: all of it)."""
    where = f"items[{index}]"
    if not isinstance(item.get("hold_id"), str):
        raise errors.ValidationFailed(
            f"{where}.hold_id must be a JSON string.", field=f"{where}.hold_id", item=index
        )
    amount = item.get("amount")
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, str | Decimal | int)
    ):
        raise errors.ValidationFailed(
            f'{where}.amount: give the amount as a decimal string, e.g. "10.50".',
            field=f"{where}.amount",
            item=index,
        )
    return {**item, "kind": kind}


# --- answering -----------------------------------------------------------------------------


def _rendered_outcome(outcome: BatchOutcome) -> dict[str, Any]:
    """One item's answer: the single endpoint's status and body. Rendered by hand, field
    for field as `api.serializers.render_result` renders it (a test holds them equal): the
    serializers cost more than the ledger at 8,189 items."""
    if isinstance(outcome, errors.WalletError):
        return {"status": outcome.http_status, **wallet_error_body(outcome)}
    if isinstance(outcome, HoldResult):
        return {
            "status": status.HTTP_200_OK if outcome.replayed else status.HTTP_201_CREATED,
            **rendered_hold_result(outcome),
        }
    return {
        "status": status.HTTP_200_OK if outcome.replayed else status.HTTP_201_CREATED,
        **rendered_result(outcome),
    }


def rendered_result(result: WalletResult) -> dict[str, Any]:
    exponent = currency_exponent(result.balance.key.currency)  # once for its five amounts
    return {
        "transaction": _rendered_transaction(result.transaction, exponent=exponent),
        "balance": _rendered_balance(result.balance, exponent=exponent),
        "replayed": result.replayed,
    }


def rendered_hold_result(result: HoldResult) -> dict[str, Any]:
    """What `api.hold_serializers.render_hold_result` writes, by hand (a test holds them
    equal)."""
    exponent = currency_exponent(result.balance.key.currency)
    return {
        "hold": _rendered_hold(result.hold, exponent=exponent),
        "balance": _rendered_balance(result.balance, exponent=exponent),
        "replayed": result.replayed,
    }


def _rendered_hold(hold: Hold, exponent: int) -> dict[str, Any]:
    key = hold.key
    return {
        "hold_id": hold.hold_id,
        "client_id": key.client_id,
        "country": key.country,
        "currency": key.currency,
        "issuer": key.issuer,
        "amount": _amount_text(hold.amount_minor, exponent=exponent),
        "captured": _amount_text(hold.captured_minor, exponent=exponent),
        "state": str(hold.state),
        "failure_code": hold.failure_code,
        "expires_in_s": hold.timeout_s,
        "created_at": _time_text(hold.created_at),
        "expires_at": _time_text(hold.expires_at),
        "made_by": hold.made_by,
        "resolved_at": _time_text(hold.resolved_at) if hold.resolved_at else None,
        "resolved_by": hold.resolved_by,
    }


def _rendered_transaction(record: TransactionRecord, exponent: int) -> dict[str, Any]:
    key = record.key
    return {
        "transaction_id": record.transaction_id,
        "kind": str(record.kind),
        "client_id": key.client_id,
        "country": key.country,
        "currency": key.currency,
        "issuer": key.issuer,
        "amount": _amount_text(record.amount_minor, exponent=exponent),
        "state": str(record.state),
        "failure_code": record.failure_code,
        "created_at": _time_text(record.created_at),
        "made_by": record.made_by,
        "voided_at": _time_text(record.voided_at) if record.voided_at else None,
        "voided_by": record.voided_by,
        "void_reason": record.void_reason,
    }


def _rendered_balance(balance: WalletBalance, exponent: int) -> dict[str, Any]:
    key = balance.key
    return {
        "client_id": key.client_id,
        "country": key.country,
        "currency": key.currency,
        "issuer": key.issuer,
        "credit": _amount_text(balance.credit_minor, exponent=exponent),
        "debit": _amount_text(balance.debit_minor, exponent=exponent),
        "historical_credit": _amount_text(balance.historical_credit_minor, exponent=exponent),
        "held": _amount_text(balance.held_minor, exponent=exponent),
    }


def _amount_text(amount_minor: int, *, exponent: int) -> str:
    """What `format(from_minor_units(amount_minor, currency), "f")` writes, from the
    integer's digits (`exponent`: the currency's): 1230 USD -> "12.30", 7 JPY -> "7"."""
    assert amount_minor >= 0, "answered amounts and balances are never negative"
    if exponent == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**exponent)
    return f"{whole}.{fraction:0{exponent}d}"


@functools.lru_cache(maxsize=4096)
def _time_text(moment: datetime) -> str:
    """What DRF's DateTimeField writes for an aware time with TIME_ZONE UTC: ISO 8601 in
    UTC, "Z" for "+00:00"."""
    text = moment.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
