"""Requests and errors per endpoint, for the dashboards a payments team builds on /metrics.

Each request is counted by its route's name (`wallet-credits`, `admin:index`, `metrics`), never
its raw path: a path carries client and transaction ids, and one series per id would grow
without bound. A path no route matches is `unmatched`. The API's refusals are also counted by
their error code (`insufficient_funds`, `store_unavailable`...), which says what went wrong in
the words of the API's contract.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

from api.middleware import API_PREFIX

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")

HTTP_REQUESTS = Counter(
    "wallet_http_requests_total",
    "HTTP requests answered, by route name, method and status code.",
    ["endpoint", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "wallet_http_request_duration_seconds",
    "Time to answer an HTTP request, by route name and method.",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
API_ERRORS = Counter(
    "wallet_api_errors_total",
    "API refusals and failures (status 400 and above), by route name and the API's error code.",
    ["endpoint", "code"],
)


def endpoint_of(request: HttpRequest) -> str:
    """The name of the route that answered (its pattern when it has no name)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return str(match.view_name or match.route or UNMATCHED)


def api_error_code(response: HttpResponse) -> str:
    """The `error.code` of the API's JSON error shape; `other` when the body has none."""
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "other"
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "other"


class RequestMetricsMiddleware:
    """Outermost: counts every answer as the client gets it, the API's error shape included
    (`api.middleware.ApiJsonErrorsMiddleware` sits inside it)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed_s = time.perf_counter() - started
        endpoint = endpoint_of(request)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
        HTTP_REQUEST_SECONDS.labels(endpoint, method).observe(elapsed_s)
        if response.status_code >= 400 and request.path_info.startswith(API_PREFIX):
            code = "other" if response.streaming else api_error_code(response)
            API_ERRORS.labels(endpoint, code).inc()
        return response
