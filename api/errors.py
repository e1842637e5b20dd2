"""One JSON error shape for every refusal: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from api.authentication import TooManyFailedAuthentications
from api.serializers import render_transaction
from domain.errors import ConflictWithOriginal, DatabaseUnavailable, WalletError, error_body

log = logging.getLogger(__name__)

# The first class a refusal is an instance of names its code (subclasses first).
_DRF_CODES = {
    TooManyFailedAuthentications: "too_many_failed_authentications",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "malformed_request",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def wallet_error_body(exc: WalletError) -> dict[str, Any]:
    """A wallet refusal in the one error shape (a 409 names the stored transaction)."""
    details = dict(exc.details)
    if isinstance(exc, ConflictWithOriginal) and exc.original is not None:
        details["original"] = render_transaction(exc.original)
    return error_body(exc.code, message=exc.message, details=details)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render wallet errors and DRF's own errors in the one shape; a database that does not
    answer (also while authenticating the token, before the view) is 503
    `database_unavailable`; anything else is a bug and stays a 500 for the error tracker."""
    if isinstance(exc, OperationalError | InterfaceError):
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        exc = DatabaseUnavailable()
    if isinstance(exc, WalletError):
        refusal = Response(wallet_error_body(exc), status=exc.http_status)
        if exc.retry_after_s is not None:
            refusal["Retry-After"] = str(exc.retry_after_s)
        return refusal
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body(
                "validation_error",
                message="The request is not valid.",
                details={"fields": exc.detail},
            ),
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        details = {}
        if isinstance(exc, exceptions.Throttled):
            wait_s = exc.wait  # type: ignore[attr-defined]  # DRF stubs 3.18.1 lack Throttled.wait
            if wait_s is not None:
                details["retry_after_s"] = wait_s  # also in the Retry-After header
        response.data = error_body(code, message=str(exc.detail), details=details)
    return response
