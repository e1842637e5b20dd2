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
from ledger.service import WalletService
from migration.runtime import process_runtime

ERROR = s.ErrorSerializer

_ACCESS_ERRORS = {
    401: OpenApiResponse(
        ERROR,
        description="not_authenticated, authentication_failed (unknown, expired or revoked token)",
    ),
    403: OpenApiResponse(ERROR, description="permission_denied"),
    429: OpenApiResponse(ERROR, description="throttled: retry after details.retry_after_s"),
}
_WRITE_ERRORS = {
    400: OpenApiResponse(
        ERROR,
        description="validation_error, invalid_amount, unknown_currency, unknown_country, "
        "malformed_request",
    ),
    **_ACCESS_ERRORS,
    409: OpenApiResponse(ERROR, description="idempotency_conflict"),
    413: OpenApiResponse(ERROR, description="request_too_large"),
    422: OpenApiResponse(
        ERROR, description="insufficient_funds, cross_currency, balance_limit_exceeded"
    ),
    503: OpenApiResponse(ERROR, description="store_unavailable: retry with the same id"),
}
_READ_ERRORS = {
    400: OpenApiResponse(
        ERROR, description="validation_error (ids), unknown_currency, unknown_country"
    ),
    **_ACCESS_ERRORS,
    404: OpenApiResponse(ERROR, description="wallet_not_found"),
    503: OpenApiResponse(ERROR, description="store_unavailable"),
}
ISSUER_PARAM = OpenApiParameter(
    "issuer", str, OpenApiParameter.QUERY, required=False, description="issuer type identifier"
)


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
        responses={200: s.PingSerializer, 401: OpenApiResponse(ERROR)},
    )
    def get(self, request: Request) -> Response:
        return Response({"user": request.user.get_username()})


class WalletCreditsView(APIView):
    required_permissions = (CREDIT_WALLETS,)

    @extend_schema(
        operation_id="add_credit",
        summary="Add credit to a wallet (creates the wallet on first credit)",
        request=s.CreditRequest,
        responses={201: s.WalletResultSerializer, 200: s.WalletResultSerializer, **_WRITE_ERRORS},
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
            201: s.WalletResultSerializer,
            200: s.WalletResultSerializer,
            404: OpenApiResponse(ERROR, description="wallet_not_found"),
            **_WRITE_ERRORS,
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
        responses={200: s.WalletBalanceSerializer, **_READ_ERRORS},
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
        responses={200: s.MultiBalanceSerializer, **_READ_ERRORS},
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
        responses={
            200: s.TransactionSerializer,
            400: OpenApiResponse(ERROR, description="validation_error (the id)"),
            **_ACCESS_ERRORS,
            404: OpenApiResponse(ERROR, description="transaction_not_found"),
            503: OpenApiResponse(ERROR, description="store_unavailable"),
        },
    )
    def get(self, request: Request, transaction_id: str) -> Response:
        return Response(s.render_transaction(wallet_service().get_transaction(transaction_id)))


class TransactionVoidView(APIView):
    required_permissions = (VOID_TRANSACTIONS,)

    @extend_schema(
        operation_id="void_transaction",
        summary="Void a credit or debit with a compensating entry",
        request=s.VoidRequest,
        responses={
            200: s.WalletResultSerializer,
            400: OpenApiResponse(ERROR, description="validation_error"),
            **_ACCESS_ERRORS,
            404: OpenApiResponse(ERROR, description="transaction_not_found"),
            409: OpenApiResponse(ERROR, description="already_voided, void_would_overdraw"),
            422: OpenApiResponse(ERROR, description="balance_limit_exceeded (voiding a debit)"),
            503: OpenApiResponse(ERROR, description="store_unavailable"),
        },
    )
    def post(self, request: Request, transaction_id: str) -> Response:
        body = _validated(s.VoidRequest, request)
        result = wallet_service().void_transaction(
            transaction_id, voided_by=request.user.get_username(), reason=body["reason"]
        )
        return Response(s.render_result(result), status=status.HTTP_200_OK)
