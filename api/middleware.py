"""Every answer under /api/ that is an error is the API's JSON error shape.

DRF renders the errors its views raise; this catches what never reaches a view or escapes
one: no route (404, also an id holding %2F, which servers decode before routing), a body
over DATA_UPLOAD_MAX_MEMORY_SIZE (413), Django's own 400/403 pages and the 500 page (Django
has logged the exception by then). The admin and the schema UI keep their HTML.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from domain.errors import error_body

API_PREFIX = "/api/"
CODE_BY_STATUS = {
    400: "malformed_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
    500: "internal_error",
}


def error_code_for_status(status: int) -> str:
    return CODE_BY_STATUS.get(status, "internal_error" if status >= 500 else "error")


def json_error_response(status: int, message: str | None = None) -> HttpResponse:
    code = error_code_for_status(status)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return HttpResponse(
        json.dumps(error_body(code, message=message or f"{phrase}.")),
        status=status,
        content_type="application/json",
    )


class ApiJsonErrorsMiddleware:
    """Outermost middleware: sees every response, including those Django made from
    exceptions raised in the other middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path_info.startswith(API_PREFIX)
            and response.status_code >= 400
            and response.get("Content-Type", "").split(";")[0] != "application/json"
        ):
            return json_error_response(response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A body over the size limit is 413, not the 400 Django gives every
        SuspiciousOperation."""
        if request.path_info.startswith(API_PREFIX) and isinstance(exception, RequestDataTooBig):
            return json_error_response(
                413,
                "The request body is larger than the server accepts "
                f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes).",
            )
        return None
