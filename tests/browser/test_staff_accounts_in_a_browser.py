"""Staff accounts in a browser (issue 27): a lockout shown in plain words and lifted by an
administrator, and enrolling an authenticator from its QR code, then signing in with a code."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django_otp.plugins.otp_totp.models import TOTPDevice

from flags.phases import Phase
from staff.enrolment import issue_code
from tests.browser.conftest import screenshot
from tests.browser.test_backoffice_in_a_browser import PASSWORD, log_in, staff_in
from tests.migration.conftest import (  # noqa: F401 - fixtures
    Stores,
    _tasks_in_process,
    committed_stores,
    enter_phase,
    new_key,
    tx,
)
from tests.second_factor import current_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def submit_password(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def test_a_locked_out_person_reads_why_and_an_administrator_unlocks_them(
    browser: Any, live_server: Any, settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    name = staff_in("Auditor")  # read-only: no second factor in the way
    locked = browser.new_context()
    page = locked.new_page()
    for _ in range(3):
        submit_password(page, live_server.url, name, "wrong password")
    page.wait_for_selector("#locked-out")
    assert "signing in is locked for 15 minutes" in page.inner_text("#locked-out")
    screenshot(page, "staff-locked-out")

    unlocker = f"unlocker-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(unlocker, password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="unlock_account"),
        Permission.objects.get(codename="view_accessattempt"),
    )
    admin_page = browser.new_context().new_page()
    log_in(admin_page, live_server.url, username=unlocker)
    admin_page.goto(f"{live_server.url}/admin/axes/accessattempt/")
    admin_page.check("input.action-select")
    admin_page.select_option("select[name=action]", "unlock")
    admin_page.click("button[name=index]")
    admin_page.wait_for_selector("text=Unlocked 1 account(s).")

    submit_password(page, live_server.url, name, PASSWORD)
    page.wait_for_selector("#content-main")
    assert page.url.endswith("/admin/")
    locked.close()


def test_support_enrols_an_authenticator_from_the_qr_code_then_signs_in_with_a_code(
    page: Any, live_server: Any
) -> None:
    name = f"support-{uuid.uuid4().hex[:6]}"
    staff_user = get_user_model().objects.create_user(name, password=PASSWORD, is_staff=True)
    staff_user.user_permissions.add(Permission.objects.get(codename="void_wallettransfer"))

    code = issue_code(staff_user, issued_by="admin")  # an administrator's, handed over

    submit_password(page, live_server.url, name, PASSWORD)
    page.wait_for_selector("#id_enrolment_code")
    page.fill("#id_enrolment_code", code)
    page.click("#enrolment-code-form input[type=submit]")
    page.wait_for_selector("#qr-code svg")
    screenshot(page, "staff-enrol-authenticator")
    device = TOTPDevice.objects.get(user=staff_user)
    page.fill("#id_otp_token", current_code(device))
    page.click("input[type=submit]")
    page.wait_for_selector("#recovery-codes")
    assert len(page.locator("#recovery-codes li").all()) == 10
    page.click("#continue")
    page.wait_for_selector("#content-main")

    page.click("#logout-form button")
    page.wait_for_selector("text=Logged out")
    submit_password(page, live_server.url, name, PASSWORD)
    page.wait_for_selector("#id_otp_token")
    assert "/admin/two-factor/verify/" in page.url
    page.fill("#id_otp_token", current_code(device))
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    assert page.url.endswith("/admin/")


def test_an_idle_session_ends_and_the_next_page_asks_to_sign_in_again(
    page: Any, live_server: Any, settings: Any
) -> None:
    settings.SESSION_COOKIE_AGE = 2  # SESSION_IDLE_TIMEOUT_S, shortened for the test
    log_in(page, live_server.url, username=staff_in("Auditor"))

    page.wait_for_timeout(3_000)
    page.goto(f"{live_server.url}/admin/staff/authevent/")

    page.wait_for_selector("#id_password")
    assert "/admin/login/" in page.url


def test_a_large_void_waits_until_a_second_support_member_approves_it(
    browser: Any,
    live_server: Any,
    settings: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    stores = committed_stores
    settings.FOUR_EYES_VOID_ABOVE = {"*": Decimal("20")}
    enter_phase(Phase.DUAL_WRITE)
    key, debit_id = new_key(), tx()
    stores.phased.add_credit(key, 10_000, tx())
    stores.phased.subtract_credit(key, 3_000, debit_id)

    asker = browser.new_context().new_page()
    log_in(asker, live_server.url, username=staff_in("Support"))
    asker.goto(f"{live_server.url}/admin/registry/wallettransfer/void/{debit_id}/")
    asker.fill("#id_reason", "customer disputed")
    asker.click("#void-form input[type=submit]")
    asker.wait_for_selector("text=waits for another staff member's approval")
    assert stores.mongo.get_balance(key).credit_minor == 7_000

    approver = browser.new_context().new_page()
    log_in(approver, live_server.url, username=staff_in("Support"))
    approver.goto(f"{live_server.url}/admin/staff/voidapproval/")
    approver.check("input.action-select")
    approver.select_option("select[name=action]", "approve")
    approver.click("button[name=index]")
    approver.wait_for_selector(f"text=Approved: voided {debit_id}.")
    screenshot(approver, "staff-void-approved")
    assert stores.mongo.get_balance(key).credit_minor == 10_000
