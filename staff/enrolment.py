"""One-time enrolment codes (issue 27): with STAFF_2FA_ENROLMENT_NEEDS_CODE on, enrolling an
authenticator (the first time, or after an administrator's reset) needs a code an
administrator issued for that person, so a stolen password alone cannot enrol the thief's
authenticator. Each code works once, for its user, until STAFF_2FA_ENROLMENT_CODE_TTL_S;
issuing one replaces that user's unused codes. Every issue and every wrong code is in the
sign-in audit."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from staff.audit import record
from staff.models import AuthEvent, EnrolmentCode

CODE_BYTES = 10  # 80 bits: 16 base32 characters, shown in four groups of four
GROUP_CHARACTERS = 4


def needs_code() -> bool:
    return bool(settings.STAFF_2FA_ENROLMENT_NEEDS_CODE)


def issue_code(user: Any, *, issued_by: str) -> str:
    """A fresh code for `user` (their unused ones no longer work), audited; returned once."""
    assert issued_by
    raw = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode()
    code = "-".join(
        raw[start : start + GROUP_CHARACTERS] for start in range(0, len(raw), GROUP_CHARACTERS)
    )
    with transaction.atomic():
        EnrolmentCode.objects.filter(user=user, used_at__isnull=True).delete()
        EnrolmentCode.objects.create(
            user=user,
            code_digest=_digest(code),
            issued_by=issued_by,
            expires_at=timezone.now() + timedelta(seconds=settings.STAFF_2FA_ENROLMENT_CODE_TTL_S),
        )
        record(
            AuthEvent.Kind.ENROLMENT_CODE_ISSUED,
            user.get_username(),
            actor=issued_by,
            details=f"valid for {settings.STAFF_2FA_ENROLMENT_CODE_TTL_S} s",
        )
    return code


def redeem(user: Any, code: str, *, request: HttpRequest) -> bool:
    """Use `code` for `user`: True once, for an unused, unexpired code issued for them; a
    wrong one is audited."""
    used = EnrolmentCode.objects.filter(
        user=user,
        code_digest=_digest(code),
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).update(used_at=timezone.now())
    if not used:
        record(AuthEvent.Kind.ENROLMENT_CODE_FAILED, user.get_username(), request=request)
    return bool(used)


def _digest(code: str) -> str:
    """Case, spaces and dashes do not matter to a person typing it."""
    normalized = "".join(code.upper().split()).replace("-", "")
    return hashlib.sha256(normalized.encode()).hexdigest()
