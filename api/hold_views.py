"""The hold API (docs/holds.md): place a hold on a wallet, capture all or part of it, release
it, read it. Views only translate HTTP to the wallet service and back, as in `api.views`: a
write answers 201 when it changed the hold now and 200 when it replays what the hold id
already did (`replayed` true, the hold as it is and the wallet's balance now)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import hold_serializers as hs
from api import views
from api.schema import ERROR_DESCRIPTIONS, error_schema
from domain.holds import HoldResult, HoldState

PLACE_HOLDS = "registry.add_wallethold"
CAPTURE_HOLDS = "registry.capture_wallethold"
RELEASE_HOLDS = "registry.release_wallethold"
VIEW_HOLDS = "registry.view_wallethold"

# A 409 of a hold that is no longer open names what it is now.
HOLD_CONFLICT_DETAILS = {
    "type": "object",
    "properties": {
        "state": {
            "type": "string",
            "enum": [state.value for state in HoldState if state != HoldState.OPEN],
            "description": "hold_not_open: what the hold is now",
        },
    },
}
_ACCESS = {
    401: ["not_authenticated", "authentication_failed"],
    403: ["permission_denied"],
    429: ["throttled", "too_many_failed_authentications"],
}
_BODY_LIMITS = {413: ["request_too_large"], 415: ["unsupported_media_type"]}
_WRITE_UNAVAILABLE = {503: ["store_unavailable", "writes_paused", "database_unavailable"]}
_HOLD_404 = {404: ["hold_not_found", "not_found"]}
REPLAYED = "the hold id already did this: the hold as it is now, `replayed` true"


def hold_error_responses(codes_by_status: dict[int, Sequence[str]]) -> dict[int, Any]:
    """The operation's error answers in the one error shape, a 409's details as holds give
    them."""
    return {
        code: OpenApiResponse(
            error_schema(codes, details=HOLD_CONFLICT_DETAILS if code == 409 else None),
            description=f"{ERROR_DESCRIPTIONS[code]}: {', '.join(codes)}",
        )
        for code, codes in sorted(codes_by_status.items())
    }


PLACE_ERRORS = hold_error_responses(
    {
        400: list(views.AMOUNT_BODY_REFUSALS),
        **_BODY_LIMITS,
        **_ACCESS,
        404: ["wallet_not_found", "not_found"],
        409: ["idempotency_conflict"],
        422: ["insufficient_funds", "cross_currency"],
        **_WRITE_UNAVAILABLE,
    }
)
CAPTURE_ERRORS = hold_error_responses(
    {
        400: ["validation_error", "invalid_amount", "malformed_request"],
        **_BODY_LIMITS,
        **_ACCESS,
        **_HOLD_404,
        409: ["hold_not_open"],
        422: ["capture_exceeds_hold"],
        **_WRITE_UNAVAILABLE,
    }
)
RELEASE_ERRORS = hold_error_responses(
    {
        400: ["validation_error", "malformed_request"],
        **_BODY_LIMITS,
        **_ACCESS,
        **_HOLD_404,
        409: ["hold_not_open"],
        **_WRITE_UNAVAILABLE,
    }
)
GET_ERRORS = hold_error_responses(
    {
        400: ["validation_error"],
        **_ACCESS,
        **_HOLD_404,
        503: ["store_unavailable", "database_unavailable"],
    }
)


def _validated(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _answer(result: HoldResult) -> Response:
    return Response(
        hs.render_hold_result(result),
        status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
    )


def _write_responses(errors: dict[int, Any], *, created: str) -> dict[int, Any]:
    return {
        201: OpenApiResponse(hs.HoldResultSerializer, description=created),
        200: OpenApiResponse(hs.HoldResultSerializer, description=REPLAYED),
        **errors,
    }


class WalletHoldsView(APIView):
    required_permissions = (PLACE_HOLDS,)

    @extend_schema(
        operation_id="place_hold",
        summary="Reserve an amount of a wallet under a hold id, until expires_in_s passes",
        description="The amount leaves the wallet's available credit at once (`balance.held`). "
        "expires_in_s: whole seconds, 1 to 2592000 (30 days), else 400 validation_error. "
        "Served in every migration phase, on every wallet (docs/holds.md).",
        request=hs.HoldRequest,
        responses=_write_responses(PLACE_ERRORS, created="placed now"),
    )
    def post(self, request: Request, client_id: str, country: str, currency: str) -> Response:
        body = _validated(hs.HoldRequest, request)
        result = views.wallet_service().place_hold(
            client_id=client_id,
            country=country,
            currency=currency,
            amount=body["amount"],
            hold_id=body["hold_id"],
            expires_in_s=body["expires_in_s"],
            issuer=body["issuer"],
            amount_currency=body["currency"],
            made_by=request.user.get_username(),
        )
        return _answer(result)


class HoldCaptureView(APIView):
    required_permissions = (CAPTURE_HOLDS,)

    @extend_schema(
        operation_id="capture_hold",
        summary="Capture an open hold: all of it, or `amount` (at most the hold's)",
        description="Posts the captured amount as a debit; what is not captured goes back to "
        "the available credit. Again for the same amount: replayed. After a release, an "
        "expiry, or a capture of another amount: 409 hold_not_open.",
        request=hs.CaptureRequest,
        responses=_write_responses(CAPTURE_ERRORS, created="captured now"),
    )
    def post(self, request: Request, hold_id: str) -> Response:
        body = _validated(hs.CaptureRequest, request)
        result = views.wallet_service().capture_hold(
            hold_id, amount=body["amount"], made_by=request.user.get_username()
        )
        return _answer(result)


class HoldReleaseView(APIView):
    required_permissions = (RELEASE_HOLDS,)

    @extend_schema(
        operation_id="release_hold",
        summary="Release an open hold: its whole amount goes back to the available credit",
        description="Again: replayed. After a capture or an expiry: 409 hold_not_open.",
        request=hs.ReleaseRequest,
        responses=_write_responses(RELEASE_ERRORS, created="released now"),
    )
    def post(self, request: Request, hold_id: str) -> Response:
        _validated(hs.ReleaseRequest, request)
        result = views.wallet_service().release_hold(hold_id, made_by=request.user.get_username())
        return _answer(result)


class HoldView(APIView):
    required_permissions = (VIEW_HOLDS,)

    @extend_schema(
        operation_id="get_hold",
        summary="A hold by its id (an open hold past expires_at reads as expired)",
        responses={200: hs.HoldSerializer, **GET_ERRORS},
    )
    def get(self, request: Request, hold_id: str) -> Response:
        return Response(hs.render_hold(views.wallet_service().get_hold(hold_id)))
