"""`GET /api/clients/{client_id}/wallets/{country}/{currency}/history`: a wallet's balance after
each of its transactions, newest first, a page at a time.

The view translates the query string to the wallet service (`get_history`) and the page
back; the rules are `ledger.history_query`'s and `domain.history`'s, stated in the schema
below. Reading a history needs the balance's permission (`registry.read_wallets`): it shows
what a balance and a transaction read show already, one point per transaction.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import views
from api.permissions import READ_WALLETS
from api.schema import error_responses
from api.serializers import AmountField
from api.views import ISSUER_PARAM
from domain.history import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    HistoryPage,
    HistoryPoint,
    PointKind,
    encode_cursor,
)
from domain.money import from_minor_units

HISTORY_ERRORS = error_responses(
    {
        400: [
            "validation_error",
            "unknown_currency",
            "unknown_country",
            "invalid_time",
            "invalid_time_range",
            "invalid_limit",
            "invalid_cursor",
        ],
        401: ["not_authenticated", "authentication_failed"],
        403: ["permission_denied"],
        404: ["wallet_not_found", "not_found"],
        429: ["throttled", "too_many_failed_authentications"],
        503: ["store_unavailable", "database_unavailable"],
    }
)

_TIME_RULE = (
    "ISO 8601 with a UTC offset (`Z` or `+HH:MM`; send `+` as `%2B`), e.g. "
    "`2026-12-01T00:00:00Z`; a time without an offset is refused (400 invalid_time). Every "
    "store keeps whole milliseconds: a finer bound counts from the next millisecond. A point's "
    "time is its transaction's `created_at`."
)
HISTORY_PARAMS = [
    ISSUER_PARAM,
    OpenApiParameter(
        "from",
        OpenApiTypes.DATETIME,
        OpenApiParameter.QUERY,
        required=False,
        description=f"Inclusive lower bound: points at or after this time. {_TIME_RULE} "
        "`from` must be earlier than `to` (400 invalid_time_range).",
    ),
    OpenApiParameter(
        "to",
        OpenApiTypes.DATETIME,
        OpenApiParameter.QUERY,
        required=False,
        description=f"Exclusive upper bound: points before this time. {_TIME_RULE}",
    ),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": HISTORY_LIMIT_MAX},
        OpenApiParameter.QUERY,
        required=False,
        default=HISTORY_LIMIT_DEFAULT,
        description=f"Points per page, 1 to {HISTORY_LIMIT_MAX} (else 400 invalid_limit).",
    ),
    OpenApiParameter(
        "cursor",
        str,
        OpenApiParameter.QUERY,
        required=False,
        description="The previous page's `next_cursor`, as given (opaque); send the same "
        "`from`/`to` with it. A token this wallet's history did not give is 400 "
        "invalid_cursor. A cursor names a point by its transaction, so it stays valid across "
        "migration phases.",
    ),
]


class HistoryPointSerializer(serializers.Serializer):
    transaction_id = serializers.CharField(
        allow_null=True,
        help_text="The credit's or debit's id; for a void, the voided transaction's id; "
        "null for an opening balance and a hold event.",
    )
    kind = serializers.ChoiceField(
        choices=[kind.value for kind in PointKind],
        help_text="credit, debit, void (a compensating entry: its own point, after the "
        "voided transaction's), or opening_balance: a wallet that MongoDB held before its "
        "transaction log and the backfill imported starts its TigerBeetle history with one "
        "point standing for everything before the import (MongoDB answers those "
        "transactions one by one). Hold events, named by `hold_id`: hold (placed: its amount "
        "leaves `credit` for `held`), capture (the captured amount is spent: `debit` grows; "
        "what was not captured goes back to `credit`), release (all of it goes back), expire "
        "(the hold's expiry freed it, timed at its `expires_at`; on MongoDB the point appears "
        "once the expiry is marked: at the wallet's next write or the sweep, within "
        "HOLD_SWEEP_INTERVAL_S).",
    )
    hold_id = serializers.CharField(
        allow_null=True, help_text="The hold's id on a hold event; null on any other point."
    )
    amount = AmountField(
        read_only=True,
        allow_null=True,
        help_text="null for an opening balance; for a hold event: what was held, captured, "
        "released or expired",
    )
    created_at = serializers.DateTimeField(
        help_text="The original write's time, whichever store took it; a void's: when it was "
        "voided."
    )
    credit = AmountField(
        read_only=True,
        help_text="available (posted credits - posted debits - held), right after this point",
    )
    held = AmountField(read_only=True, help_text="what open holds reserve, right after this point")
    debit = AmountField(read_only=True, help_text="spent, right after this transaction")
    historical_credit = AmountField(
        read_only=True, help_text="total received, right after this transaction"
    )


class WalletHistorySerializer(serializers.Serializer):
    client_id = serializers.CharField()
    country = serializers.CharField()
    currency = serializers.CharField()
    issuer = serializers.CharField(allow_null=True)
    points = HistoryPointSerializer(many=True, help_text="newest first")
    next_cursor = serializers.CharField(
        allow_null=True, help_text="the next (older) page's cursor; null on the last page"
    )


def render_history(page: HistoryPage) -> dict[str, Any]:
    key = page.key
    last_ref = page.points[-1].ref() if page.points else None
    next_cursor = encode_cursor(key, last_ref) if page.has_more and last_ref else None
    return {
        "client_id": key.client_id,
        "country": key.country,
        "currency": key.currency,
        "issuer": key.issuer,
        "points": [_point(point, key.currency) for point in page.points],
        "next_cursor": next_cursor,
    }


def _point(point: HistoryPoint, currency: str) -> dict[str, Any]:
    balance = point.balance
    amount = point.amount_minor
    return {
        "transaction_id": point.transaction_id,
        "kind": point.kind.value,
        "hold_id": point.hold_id,
        "amount": None if amount is None else format(from_minor_units(amount, currency), "f"),
        "created_at": serializers.DateTimeField().to_representation(point.created_at),
        "credit": format(balance.credit, "f"),
        "held": format(balance.held, "f"),
        "debit": format(balance.debit, "f"),
        "historical_credit": format(balance.historical_credit, "f"),
    }


class WalletHistoryView(APIView):
    required_permissions = (READ_WALLETS,)

    @extend_schema(
        operation_id="get_history",
        summary="A wallet's balance after each transaction, newest first, paged by cursor",
        description="Each point is one transaction (a credit, a debit, a void) or one hold "
        "event (placed, captured, released, expired) with the wallet's balance right after "
        "it, in the balance's fields and formatting (`held` included). The answer "
        "is the same in every migration phase: from MongoDB's transaction log while it is "
        "authoritative, from TigerBeetle's account history where TigerBeetle is (except a "
        "wallet imported by the backfill: see `kind` opening_balance). Needs "
        "`registry.read_wallets`, as a balance does.",
        parameters=HISTORY_PARAMS,
        responses={200: WalletHistorySerializer, **HISTORY_ERRORS},
    )
    def get(self, request: Request, client_id: str, country: str, currency: str) -> Response:
        params = request.query_params
        page = views.wallet_service().get_history(
            client_id=client_id,
            country=country,
            currency=currency,
            issuer=params.get("issuer") or None,
            from_time=params.get("from") or None,
            to_time=params.get("to") or None,
            limit=params.get("limit"),
            cursor=params.get("cursor"),
        )
        return Response(render_history(page))
