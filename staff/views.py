"""Enrolling an authenticator (the administrator's one-time enrolment code when
STAFF_2FA_ENROLMENT_NEEDS_CODE is on, then the QR code, then recovery codes shown once) and
entering a code after the password (staff/two_factor.py says who must)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import segno
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from staff import enrolment
from staff.audit import record
from staff.models import AuthEvent
from staff.two_factor import ENROL_PATH, VERIFY_PATH

RECOVERY_CODES = 10
CODE_REFUSED = "That code is not right. Enter the code your authenticator shows now."
ENROLMENT_CODE_REFUSED = (
    "That enrolment code is not right, was used already or has expired. Ask an administrator "
    "for a new one."
)
# The session's user whose enrolment code was accepted: the QR code is shown to them only.
CODE_ACCEPTED_FOR = "staff_enrolment_code_accepted_for"


@staff_member_required
def enrol_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return HttpResponseRedirect(f"{VERIFY_PATH}?next={_next(request)}")
    if enrolment.needs_code() and request.session.get(CODE_ACCEPTED_FOR) != user.pk:
        return _enrolment_code_step(request)
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    error = ""
    if request.method == "POST":
        if device.verify_token(_token(request)):
            codes = _confirm(request, device)
            return _page(request, "admin/two_factor/recovery_codes.html", codes=codes)
        record(AuthEvent.Kind.SECOND_FACTOR_FAILED, user.get_username(), request=request)
        error = CODE_REFUSED
    qr_svg = segno.make(device.config_url, error="m").svg_inline(scale=4)
    secret = device.config_url.split("secret=")[1].split("&")[0]
    return _page(request, "admin/two_factor/enrol.html", qr_svg=qr_svg, secret=secret, error=error)


@staff_member_required
def verify_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    error = ""
    if request.method == "POST":
        token = _token(request)
        for device in [
            *TOTPDevice.objects.filter(user=user, confirmed=True),
            *StaticDevice.objects.filter(user=user, confirmed=True),
        ]:
            if verify_token(user, device.persistent_id, token) is not None:
                otp_login(request, device)
                return HttpResponseRedirect(_next(request))
        record(AuthEvent.Kind.SECOND_FACTOR_FAILED, user.get_username(), request=request)
        error = CODE_REFUSED + " Or use one of your recovery codes."
    return _page(request, "admin/two_factor/verify.html", error=error)


def _enrolment_code_step(request: HttpRequest) -> HttpResponse:
    """Before the QR code: the one-time code an administrator issued for this person
    (staff/enrolment.py), so the password alone does not enrol an authenticator."""
    error = ""
    if request.method == "POST":
        if enrolment.redeem(request.user, request.POST.get("enrolment_code", ""), request=request):
            request.session[CODE_ACCEPTED_FOR] = request.user.pk
            return HttpResponseRedirect(f"{ENROL_PATH}?{urlencode({'next': _next(request)})}")
        error = ENROLMENT_CODE_REFUSED
    return _page(request, "admin/two_factor/enrolment_code.html", error=error)


def _confirm(request: HttpRequest, device: TOTPDevice) -> list[str]:
    """The authenticator confirmed, fresh recovery codes made, this session verified."""
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        StaticDevice.objects.filter(user=device.user).delete()
        recovery = StaticDevice.objects.create(user=device.user, name="recovery codes")
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        for code in codes:
            recovery.token_set.create(token=code)
        record(AuthEvent.Kind.SECOND_FACTOR_ENROLLED, device.user.get_username(), request=request)
    request.session.pop(CODE_ACCEPTED_FOR, None)
    otp_login(request, device)
    return codes


def _token(request: HttpRequest) -> str:
    return "".join(request.POST.get("otp_token", "").split())[:16]


def _next(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or "/admin/"
    if url_has_allowed_host_and_scheme(wanted, {request.get_host()}, request.is_secure()):
        return wanted
    return "/admin/"


def _page(request: HttpRequest, template: str, **context: Any) -> HttpResponse:
    context = {**admin.site.each_context(request), "next": _next(request), **context}
    context.setdefault("title", "Two-factor sign-in")
    return render(request, template, context)
