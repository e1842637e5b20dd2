"""Two factors for staff who move money (issue 27): required for holders of the void,
phase-change, override and repair permissions and for superusers; enrolment with a QR code
and recovery codes; a code or a recovery code after the password; reset by an administrator
(audited); read-only roles exempt by setting."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from staff.models import AuthEvent
from tests.backoffice.conftest import PASSWORD, client_for, user_in
from tests.second_factor import current_code, enrolled_authenticator

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def password_only(user: Any) -> Client:
    client = Client()
    client.post(LOGIN, {"username": user.username, "password": PASSWORD})
    return client


def test_support_who_can_void_is_sent_to_enrol_after_the_password() -> None:
    client = password_only(user_in("Support"))

    answer = client.get("/admin/")

    assert answer.status_code == 302
    assert answer["Location"] == "/admin/two-factor/enrol/?next=%2Fadmin%2F"


def test_an_enrolled_user_is_asked_for_a_code_before_any_admin_page() -> None:
    user = user_in("Product")
    enrolled_authenticator(user)
    client = password_only(user)

    answer = client.get("/admin/migration/phase/")

    assert answer.status_code == 302
    assert answer["Location"].startswith("/admin/two-factor/verify/")


def test_a_read_only_role_is_exempt_by_default() -> None:
    client = password_only(user_in("Auditor"))

    assert client.get("/admin/").status_code == 200


def test_with_the_exemption_off_read_only_staff_need_it_too(settings: Any) -> None:
    settings.STAFF_2FA_EXEMPT_READ_ONLY = False
    client = password_only(user_in("Auditor"))

    assert client.get("/admin/").status_code == 302


def test_a_directly_granted_money_moving_permission_needs_it() -> None:
    user = user_in(None)
    user.user_permissions.add(Permission.objects.get(codename="repair_transfer_registry"))

    assert password_only(user).get("/admin/").status_code == 302


def test_enrolment_shows_a_qr_code_and_gives_recovery_codes_once_confirmed() -> None:
    user = user_in("Support")
    client = password_only(user)

    enrol = client.get("/admin/two-factor/enrol/?next=/admin/")
    device = TOTPDevice.objects.get(user=user)
    confirmed = client.post(
        "/admin/two-factor/enrol/", {"otp_token": current_code(device), "next": "/admin/"}
    )

    assert "<svg" in enrol.content.decode()
    assert confirmed.status_code == 200
    assert len(confirmed.context["codes"]) == 10
    assert TOTPDevice.objects.get(user=user).confirmed
    assert client.get("/admin/").status_code == 200
    assert AuthEvent.objects.filter(kind="2fa_enrolled", username=user.username).exists()


def test_a_wrong_enrolment_code_confirms_nothing_and_is_audited() -> None:
    user = user_in("Support")
    client = password_only(user)
    client.get("/admin/two-factor/enrol/")

    answer = client.post("/admin/two-factor/enrol/", {"otp_token": "000000"})

    assert "That code is not right" in answer.content.decode()
    assert not TOTPDevice.objects.get(user=user).confirmed
    assert client.get("/admin/").status_code == 302
    assert AuthEvent.objects.filter(kind="2fa_failed", username=user.username).exists()


def test_the_right_code_opens_the_admin_and_goes_where_asked() -> None:
    user = user_in("Support")
    device = enrolled_authenticator(user)
    client = password_only(user)

    answer = client.post(
        "/admin/two-factor/verify/",
        {"otp_token": current_code(device), "next": "/admin/registry/walletaccount/"},
    )

    assert answer["Location"] == "/admin/registry/walletaccount/"
    assert client.get("/admin/").status_code == 200


def test_a_recovery_code_signs_in_once() -> None:
    user = user_in("Support")
    client = password_only(user)
    client.get("/admin/two-factor/enrol/")
    device = TOTPDevice.objects.get(user=user)
    codes = client.post("/admin/two-factor/enrol/", {"otp_token": current_code(device)}).context[
        "codes"
    ]

    first, again = password_only(user), password_only(user)
    first.post("/admin/two-factor/verify/", {"otp_token": codes[0]})
    again.post("/admin/two-factor/verify/", {"otp_token": codes[0]})

    assert first.get("/admin/").status_code == 200
    assert again.get("/admin/").status_code == 302
    assert StaticToken.objects.filter(device__user=user).count() == 9


def test_an_administrator_resets_a_second_factor_and_it_is_audited() -> None:
    user = user_in("Support")
    signed_in = client_for(user)
    admin = user_in(None, superuser=True)

    client_for(admin).post(
        "/admin/auth/user/", {"action": "reset_second_factor", "_selected_action": [user.pk]}
    )

    assert not TOTPDevice.objects.filter(user=user).exists()
    assert signed_in.get("/admin/")["Location"].startswith("/admin/two-factor/enrol/")
    event = AuthEvent.objects.get(kind="2fa_reset")
    assert (event.username, event.actor) == (user.username, admin.username)


def test_resetting_needs_its_permission() -> None:
    user = user_in("Support")
    enrolled_authenticator(user)
    viewer = user_in(None)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_user"), Permission.objects.get(codename="change_user")
    )

    client_for(viewer).post(
        "/admin/auth/user/", {"action": "reset_second_factor", "_selected_action": [user.pk]}
    )

    assert TOTPDevice.objects.filter(user=user).exists()
