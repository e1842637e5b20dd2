"""Signing staff in with their second factor in tests, as a person who enrolled would: a
confirmed authenticator (TOTP) with a key the test knows, and the session marked verified
the way django-otp's login does. The requirement itself stays on (STAFF_2FA_REQUIRED)."""

from __future__ import annotations

import time
from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from staff.two_factor import needs_second_factor

# 20 bytes, hex, as django-otp stores a TOTP key.
KNOWN_KEY_HEX = "3132333435363738393031323334353637383930"


def enrolled_authenticator(user: Any) -> TOTPDevice:
    """The user's confirmed authenticator, made with KNOWN_KEY_HEX if they have none."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(
            user=user, name="test authenticator", key=KNOWN_KEY_HEX, confirmed=True
        )
    return device


def current_code(device: TOTPDevice) -> str:
    """The code the authenticator shows now, or the next one when now's was used already (a
    code is accepted once; django-otp accepts the next step too)."""
    device.refresh_from_db()
    step_now = int((time.time() - device.t0) // device.step) + device.drift
    step = max(step_now, device.last_t + 1)
    return f"{hotp(device.bin_key, step, digits=device.digits):0{device.digits}d}"


def signed_in_with_second_factor(client: Client, user: Any) -> Client:
    """force_login, plus the second factor when the user's permissions need one."""
    client.force_login(user)
    if needs_second_factor(user):
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = enrolled_authenticator(user).persistent_id
        session.save()
    return client
