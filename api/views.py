"""The wallet REST API: five operations plus reading a transaction, resource-style URLs.

Views only translate HTTP to the wallet service and back; every rule lives below them.
A write answers 201 when it posted now and 200 when the id had been applied before
(an idempotent replay with the original result).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.permissions import (
    CREDIT_WALLETS,
    DEBIT_WALLETS,
    READ_WALLETS,
    VOID_TRANSACTIONS,
)
from api.schema import error_responses
from ledger.service import WalletService
from migration.runtime import process_runtime

# Every error an operation can answer, by status, with its codes (api.schema renders them in
# the one error shape). 404 not_found: a path no route takes, e.g. an id holding %2F.
_ACCESS = {
    401: ["not_authenticated", "authentication_failed"],
    403: ["permission_denied"],
    429: ["throttled", "too_many_failed_authentications"],
}
_UNAVAILABLE = {503: ["store_unavailable", "database_unavailable"]}
_WRITE_UNAVAILABLE = {503: ["store_unavailable", "writes_paused", "database_unavailable"]}
# What a body naming a wallet and an amount is refused with before anything is written: the
# single writes', a hold's and a batch's alike.
AMOUNT_BODY_REFUSALS = (
    "validation_error",
    "invalid_amount",
    "unknown_currency",
    "unknown_country",
    "malformed_request",
)
_BODY = {
    400: list(AMOUNT_BODY_REFUSALS),
    413: ["request_too_large"],
    415: ["unsupported_media_type"],
}
_READ_400 = {400: ["validation_error", "unknown_currency", "unknown_country"]}
CREDIT_ERRORS = error_responses(
    {
        **_BODY,
        **_ACCESS,
        404: ["not_found"],
        409: ["idempotency_conflict"],
        422: ["cross_currency", "balance_limit_exceeded"],
        **_WRITE_UNAVAILABLE,
    }
)
DEBIT_ERRORS = error_responses(
    {
        **_BODY,
        **_ACCESS,
        404: ["wallet_not_found", "not_found"],
        409: ["idempotency_conflict"],
        422: ["insufficient_funds", "cross_currency"],
        **_WRITE_UNAVAILABLE,
    }
)
VOID_ERRORS = error_responses(
    {
        400: ["validation_error", "malformed_request"],
        413: ["request_too_large"],
        415: ["unsupported_media_type"],
        **_ACCESS,
        404: ["transaction_not_found", "not_found"],
        409: ["already_voided", "void_would_overdraw"],
        422: ["balance_limit_exceeded"],
        **_WRITE_UNAVAILABLE,
    }
)
BALANCE_ERRORS = error_responses(
    {**_READ_400, **_ACCESS, 404: ["wallet_not_found", "not_found"], **_UNAVAILABLE}
)
BALANCES_ERRORS = error_responses(
    {400: ["validation_error"], **_ACCESS, 404: ["not_found"], **_UNAVAILABLE}
)
TRANSACTION_ERRORS = error_responses(
    {
        400: ["validation_error"],
        **_ACCESS,
        404: ["transaction_not_found", "not_found"],
        **_UNAVAILABLE,
    }
)
PING_ERRORS = error_responses({401: _ACCESS[401], 429: _ACCESS[429], 503: ["database_unavailable"]})
ISSUER_PARAM = OpenApiParameter(
    "issuer", str, OpenApiParameter.QUERY, required=False, description="the wallet's issuer"
)
REPLAYED = "the id was applied before: the original result, `replayed` true"


def wallet_service() -> WalletService:
    """The service per request, over the process's store (`wallet_site.wiring`); a seam
    tests replace."""
    return process_runtime().wallet_service()


def _validated(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _write_response(result: Any) -> Response:
    return Response(
        s.render_result(result),
        status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
    )


class PingView(APIView):
    """Lets a client check its credentials without touching a store (and is the HTTP
    benchmark's baseline: the same server, auth and rendering, no wallet work)."""

    required_permissions = ()  # any valid token

    @extend_schema(
        operation_id="ping",
        summary="Check credentials",
        responses={200: s.PingSerializer, **PING_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response({"user": request.user.get_username()})


class WalletCreditsView(APIView):
    required_permissions = (CREDIT_WALLETS,)

    @extend_schema(
        operation_id="add_credit",
        summary="Add credit to a wallet (creates the wallet on first credit)",
        request=s.CreditRequest,
        responses={
            201: OpenApiResponse(s.WalletResultSerializer, description="posted now"),
            200: OpenApiResponse(s.WalletResultSerializer, description=REPLAYED),
            **CREDIT_ERRORS,
        },
    )
    def post(self, request: Request, client_id: str, country: str, currency: str) -> Response:
        body = _validated(s.CreditRequest, request)
        result = wallet_service().add_credit(
            client_id=client_id,
            country=country,
            currency=currency,
            amount=body["amount"],
            transaction_id=body["transaction_id"],
            issuer=body["issuer"],
            amount_currency=body["currency"],
            made_by=request.user.get_username(),
        )
        return _write_response(result)


class WalletDebitsView(APIView):
    required_permissions = (DEBIT_WALLETS,)

    @extend_schema(
        operation_id="subtract_credit",
        summary="Subtract credit from a wallet; never below zero",
        request=s.DebitRequest,
        responses={
            201: OpenApiResponse(s.WalletResultSerializer, description="posted now"),
            200: OpenApiResponse(s.WalletResultSerializer, description=REPLAYED),
            **DEBIT_ERRORS,
        },
    )
    def post(self, request: Request, client_id: str, country: str, currency: str) -> Response:
        body = _validated(s.DebitRequest, request)
        result = wallet_service().subtract_credit(
            client_id=client_id,
            country=country,
            currency=currency,
            amount=body["amount"],
            reference_id=body["reference_id"],
            issuer=body["issuer"],
            amount_currency=body["currency"],
            made_by=request.user.get_username(),
        )
        return _write_response(result)


class WalletBalanceView(APIView):
    required_permissions = (READ_WALLETS,)

    @extend_schema(
        operation_id="get_balance",
        summary="A wallet's balance",
        parameters=[ISSUER_PARAM],
        responses={200: s.WalletBalanceSerializer, **BALANCE_ERRORS},
    )
    def get(self, request: Request, client_id: str, country: str, currency: str) -> Response:
        balance = wallet_service().get_balance(
            client_id=client_id,
            country=country,
            currency=currency,
            issuer=request.query_params.get("issuer") or None,
        )
        return Response(s.render_balance(balance))


class ClientWalletsView(APIView):
    required_permissions = (READ_WALLETS,)

    @extend_schema(
        operation_id="get_balances",
        summary="All wallets of a client (an empty list if none)",
        responses={200: s.MultiBalanceSerializer, **BALANCES_ERRORS},
    )
    def get(self, request: Request, client_id: str) -> Response:
        balances = wallet_service().get_balances(client_id)
        return Response(
            s.MultiBalanceSerializer({"client_id": client_id, "wallets": balances}).data
        )


class TransactionView(APIView):
    required_permissions = (READ_WALLETS,)

    @extend_schema(
        operation_id="get_transaction",
        summary="A credit or debit by its transaction / reference id",
        responses={200: s.TransactionSerializer, **TRANSACTION_ERRORS},
    )
    def get(self, request: Request, transaction_id: str) -> Response:
        return Response(s.render_transaction(wallet_service().get_transaction(transaction_id)))


class TransactionVoidView(APIView):
    required_permissions = (VOID_TRANSACTIONS,)

    @extend_schema(
        operation_id="void_transaction",
        summary="Void a credit or debit with a compensating entry",
        request=s.VoidRequest,
        responses={200: s.WalletResultSerializer, **VOID_ERRORS},
    )
    def post(self, request: Request, transaction_id: str) -> Response:
        body = _validated(s.VoidRequest, request)
        result = wallet_service().void_transaction(
            transaction_id, voided_by=request.user.get_username(), reason=body["reason"]
        )
        return Response(s.render_result(result), status=status.HTTP_200_OK)
