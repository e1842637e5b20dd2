"""Two factors (TOTP, django-otp) for staff who can move money or where it is written
(issue 27): holders of the void, phase-change, override and repair permissions, and
superusers. Read-only roles are exempt while STAFF_2FA_EXEMPT_READ_ONLY is on.

The middleware sends such a person, signed in with a password only, to enrol (no confirmed
authenticator yet) or to enter a code, before any other admin page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from staff.models import AuthEvent

# The permissions that move money or where it is written (their data migrations name them).
MONEY_MOVING_PERMISSIONS = (
    "registry.void_wallettransfer",
    "flags.change_phase",
    "flags.override_phase_criterion",
    "migration.repair_transfer_registry",
    "staff.approve_void",
    # Lets its holder enrol an authenticator for an account whose password they know.
    "staff.issue_enrolment_code",
)
ENROL_PATH = "/admin/two-factor/enrol/"
VERIFY_PATH = "/admin/two-factor/verify/"
# Reachable before the second factor: the way to give it, and the way out.
_OPEN_PATHS = (ENROL_PATH, VERIFY_PATH, "/admin/login/", "/admin/logout/", "/admin/jsi18n/")


def needs_second_factor(user: Any) -> bool:
    if not settings.STAFF_2FA_REQUIRED or not user.is_authenticated or not user.is_staff:
        return False
    if user.is_superuser or not settings.STAFF_2FA_EXEMPT_READ_ONLY:
        return True
    return any(user.has_perm(permission) for permission in MONEY_MOVING_PERMISSIONS)


def has_authenticator(user: Any) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


class SecondFactorRequiredMiddleware:
    """After django-otp's OTPMiddleware: an admin page asked for by someone who needs a
    second factor and has not given one this session redirects to enrol or to the code."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if not path.startswith("/admin/") or path.startswith(_OPEN_PATHS):
            return self.get_response(request)
        user = request.user
        verified = user.is_verified()  # type: ignore[union-attr]  # OTPMiddleware adds it
        if not needs_second_factor(user) or verified:
            return self.get_response(request)
        target = VERIFY_PATH if has_authenticator(user) else ENROL_PATH
        return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")


def reset_second_factor(user: Any, *, actor: str) -> None:
    """Deletes the user's authenticators and recovery codes (audited): their sessions lose
    the second factor at once, and the next sign-in enrols a new authenticator."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        AuthEvent.objects.create(
            kind=AuthEvent.Kind.SECOND_FACTOR_RESET, username=user.get_username(), actor=actor
        )
