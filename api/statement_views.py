"""`GET /api/clients/{client_id}/wallets/{country}/{currency}/statement?from=&to=`: a wallet's
statement for a period as CSV (`ledger.statements`).

The answer is text/csv whatever the client's Accept header says (the one representation);
a refusal is the API's one JSON error shape. Reading a statement needs its own permission
(`registry.view_statement`), which support and the service accounts hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from api import views
from api.permissions import VIEW_STATEMENTS
from api.schema import error_responses
from api.views import ISSUER_PARAM
from domain.statements import STATEMENT_LINES_MAX, STATEMENT_SPAN_MAX_DAYS
from ledger.statements import CSV_HEADER, statement_csv, statement_filename

STATEMENT_ERRORS = error_responses(
    {
        400: [
            "validation_error",
            "unknown_currency",
            "unknown_country",
            "invalid_time",
            "invalid_time_range",
            "statement_period_too_long",
            "statement_too_large",
        ],
        401: ["not_authenticated", "authentication_failed"],
        403: ["permission_denied"],
        404: ["wallet_not_found", "not_found"],
        429: ["throttled", "too_many_failed_authentications"],
        503: ["store_unavailable", "database_unavailable"],
    }
)

_TIME_RULE = (
    "Required. ISO 8601 with a UTC offset (`Z` or `+HH:MM`; send `+` as `%2B`), e.g. "
    "`2026-12-01T00:00:00Z`: missing or without an offset is 400 invalid_time. A finer bound "
    "than a millisecond counts from the next millisecond."
)
STATEMENT_PARAMS = [
    ISSUER_PARAM,
    OpenApiParameter(
        "from",
        OpenApiTypes.DATETIME,
        OpenApiParameter.QUERY,
        required=True,
        description=f"Inclusive start of the period. {_TIME_RULE} `from` must be earlier "
        "than `to` (400 invalid_time_range).",
    ),
    OpenApiParameter(
        "to",
        OpenApiTypes.DATETIME,
        OpenApiParameter.QUERY,
        required=True,
        description=f"Exclusive end of the period. {_TIME_RULE} At most "
        f"{STATEMENT_SPAN_MAX_DAYS} days after `from` (400 statement_period_too_long).",
    ),
]

STATEMENT_CSV_DESCRIPTION = (
    f"CSV (RFC 4180, UTF-8), columns {', '.join(CSV_HEADER)}. The first row after the header "
    "is `period_opening` (the balance at `from`: right after the wallet's last transaction "
    "before it, zero if none), then one row per transaction and hold event of the period, "
    "oldest first, with its effect on the available and held amounts (signed) and the "
    "balance right after it, then `period_closing` (the balance at `to`, the change columns "
    "holding the period's change). Kinds: credit, debit, void_of_credit, void_of_debit, "
    "hold, capture, release, expire, opening_balance (a wallet TigerBeetle imported from "
    "MongoDB: everything before the import). Amounts are decimal strings in `currency`, "
    "never floats. opening + credits - debits - voids of credits + voids of debits - held "
    "placed + released + expired + what captures freed beyond their capture = closing "
    "available; opening + placed - released - expired - freed by captures = closing held. "
    f"At most {STATEMENT_LINES_MAX} rows of transactions (400 statement_too_large)."
)


class JsonErrorsWhateverIsAccepted(BaseContentNegotiation):
    """A statement is CSV whatever Accept says; a refusal is JSON (the first renderer)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class WalletStatementView(APIView):
    required_permissions = (VIEW_STATEMENTS,)
    content_negotiation_class = JsonErrorsWhateverIsAccepted

    @extend_schema(
        operation_id="get_statement",
        summary="A wallet's statement for a period, as CSV",
        description="Opening and closing balances and every transaction and hold event "
        "between them, from the wallet's balance history (the same in every migration "
        "phase, `get_history`). Needs `registry.view_statement`.",
        parameters=STATEMENT_PARAMS,
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR, description=STATEMENT_CSV_DESCRIPTION
            ),
            **STATEMENT_ERRORS,
        },
    )
    def get(self, request: Request, client_id: str, country: str, currency: str) -> HttpResponse:
        params = request.query_params
        statement = views.wallet_service().get_statement(
            client_id=client_id,
            country=country,
            currency=currency,
            issuer=params.get("issuer") or None,
            from_time=params.get("from") or None,
            to_time=params.get("to") or None,
        )
        response = HttpResponse(statement_csv(statement), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{statement_filename(statement)}"'
        return response
