"""What a locked-out person sees (django-axes' AXES_LOCKOUT_CALLABLE): the admin's sign-in
page with a plain sentence saying why and until when, answered 429 with Retry-After."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any = None
) -> HttpResponse:
    cool_off = get_cool_off(request)
    lockout_s = int(cool_off.total_seconds()) if cool_off else 0
    context = {
        "title": "Signing in is locked",
        "lockout_minutes": max(1, round(lockout_s / 60)) if lockout_s else 0,
        "site_header": "Wallet ledger back-office",
    }
    response = render(request, "admin/locked_out.html", context, status=429)
    if lockout_s:
        response["Retry-After"] = str(lockout_s)
    return response


def client_ip_address(request: HttpRequest) -> str | None:
    """The source a lockout is keyed on: REMOTE_ADDR, or the header the TLS proxy writes the
    client's address into (LOGIN_CLIENT_IP_HEADER, e.g. HTTP_X_REAL_IP)."""
    header = settings.LOGIN_CLIENT_IP_HEADER
    if header and request.META.get(header):
        return str(request.META[header]).split(",")[0].strip()
    return request.META.get("REMOTE_ADDR") or None
