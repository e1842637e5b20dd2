"""Two factors for staff who move money (issue 27): required for holders of the void,
phase-change, override and repair permissions and for superusers; enrolment with a QR code
and recovery codes; a code or a recovery code after the password; reset by an administrator
(audited); read-only roles exempt by setting."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from staff.enrolment import issue_code
from staff.models import AuthEvent, EnrolmentCode
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


def with_enrolment_code(user: Any) -> Client:
    """Signed in with the password, past the administrator's one-time enrolment code."""
    client = password_only(user)
    code = issue_code(user, issued_by="admin")
    client.post("/admin/two-factor/enrol/", {"enrolment_code": code, "next": "/admin/"})
    return client


def test_enrolment_shows_a_qr_code_and_gives_recovery_codes_once_confirmed() -> None:
    user = user_in("Support")
    client = with_enrolment_code(user)

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
    client = with_enrolment_code(user)
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
    client = with_enrolment_code(user)
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


# --- the administrator's one-time enrolment code (a password alone enrols nobody) ---------


def test_the_password_alone_does_not_show_a_qr_code() -> None:
    user = user_in("Support")
    client = password_only(user)

    page = client.get("/admin/two-factor/enrol/?next=/admin/").content.decode()
    refused = client.post("/admin/two-factor/enrol/", {"enrolment_code": "AAAA-BBBB-CCCC-DDDD"})

    assert 'id="enrolment-code-form"' in page and 'id="qr-code"' not in page
    assert "That enrolment code is not right" in refused.content.decode()
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert AuthEvent.objects.filter(kind="enrolment_code_failed", username=user.username).exists()


def test_a_code_works_once_and_only_for_its_user() -> None:
    user, other = user_in("Support"), user_in("Support")
    code = issue_code(user, issued_by="admin")

    stolen = password_only(other).post("/admin/two-factor/enrol/", {"enrolment_code": code})
    own = password_only(user).post("/admin/two-factor/enrol/", {"enrolment_code": code.lower()})
    again = password_only(user).post("/admin/two-factor/enrol/", {"enrolment_code": code})

    assert "That enrolment code is not right" in stolen.content.decode()
    assert own.status_code == 302 and own["Location"].startswith("/admin/two-factor/enrol/")
    assert "That enrolment code is not right" in again.content.decode()
    issued = AuthEvent.objects.get(kind="enrolment_code_issued", username=user.username)
    assert issued.actor == "admin"


def test_an_expired_or_replaced_code_does_not_work(settings: Any) -> None:
    user = user_in("Support")
    first = issue_code(user, issued_by="admin")
    second = issue_code(user, issued_by="admin")  # replaces the first
    client = password_only(user)

    replaced = client.post("/admin/two-factor/enrol/", {"enrolment_code": first})
    EnrolmentCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.post("/admin/two-factor/enrol/", {"enrolment_code": second})

    assert "That enrolment code is not right" in replaced.content.decode()
    assert "That enrolment code is not right" in expired.content.decode()


def test_an_administrator_issues_a_code_in_the_users_list_shown_once() -> None:
    admin_user = user_in(None)
    admin_user.user_permissions.add(
        Permission.objects.get(codename="issue_enrolment_code"),
        Permission.objects.get(codename="view_user"),
    )
    user = user_in("Support")

    answer = client_for(admin_user).post(
        "/admin/auth/user/",
        {"action": "issue_enrolment_code", "_selected_action": [user.pk]},
        follow=True,
    )

    page = answer.content.decode()
    assert f"Enrolment code for {user.username}: " in page
    code = page.split(f"Enrolment code for {user.username}: ")[1].split(" ")[0]
    enrolled = password_only(user).post("/admin/two-factor/enrol/", {"enrolment_code": code})
    assert enrolled.status_code == 302
    assert AuthEvent.objects.get(kind="enrolment_code_issued").actor == admin_user.username


def test_without_the_permission_no_code_is_issued() -> None:
    support = user_in("Support")
    user = user_in("Support")

    client_for(support).post(
        "/admin/auth/user/",
        {"action": "issue_enrolment_code", "_selected_action": [user.pk]},
    )

    assert not EnrolmentCode.objects.exists()


def test_the_command_issues_the_first_administrators_code() -> None:
    user = user_in(None, superuser=True)
    out = StringIO()

    call_command("enrolment_code", user.username, "--actor", "ops", stdout=out)

    code = out.getvalue().strip().rsplit(" ", 1)[1]
    assert (
        password_only(user).post("/admin/two-factor/enrol/", {"enrolment_code": code}).status_code
        == 302
    )
    assert AuthEvent.objects.get(kind="enrolment_code_issued").actor == "ops (command)"


def test_with_the_setting_off_the_password_leads_straight_to_the_qr_code(settings: Any) -> None:
    settings.STAFF_2FA_ENROLMENT_NEEDS_CODE = False
    page = password_only(user_in("Support")).get("/admin/two-factor/enrol/").content.decode()
    assert 'id="qr-code"' in page
