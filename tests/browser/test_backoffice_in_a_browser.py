"""The back-office in a real browser: support voids a transaction and sees both balances
change; product moves the read rollout and sees the dashboard follow."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from flags.phases import Phase
from tests.browser.conftest import screenshot
from tests.migration.conftest import (  # noqa: F401 - fixtures
    Stores,
    _tasks_in_process,
    committed_stores,
    enter_phase,
    new_key,
    tx,
)
from tests.roles import role as group_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery staple"


def staff_in(role: str) -> str:
    name = f"{role.lower()}-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(name, password=PASSWORD, is_staff=True)
    user.groups.add(group_for(role))
    return name


def log_in(page: Any, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")


def balance_cells(page: Any, field: str) -> tuple[str, str]:
    row = page.locator(f'#balances tr[data-field="{field}"]')
    return row.locator("td.mongo").inner_text(), row.locator("td.tigerbeetle").inner_text()


def test_support_finds_a_client_voids_with_a_reason_and_sees_both_balances_change(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, debit_id = new_key(), tx()
    committed_stores.phased.add_credit(key, 10_000, tx())
    committed_stores.phased.subtract_credit(key, 3_000, debit_id)
    log_in(page, live_server.url, staff_in("Support"))

    page.goto(f"{live_server.url}/admin/registry/walletaccount/")
    page.fill("#searchbar", key.client_id)
    page.press("#searchbar", "Enter")
    page.click(f"text={key.client_id}")
    page.wait_for_selector("#balances")
    screenshot(page, "support-1-wallet-before-void")
    assert balance_cells(page, "credit") == ("70.00", "70.00")

    page.locator("#mongo-log tr", has_text=debit_id).locator("a.void-link").click()
    page.fill("#id_reason", "customer disputed the purchase")
    screenshot(page, "support-2-void-confirmation")
    page.click("input[name=_void]")
    page.wait_for_selector("#balances")
    screenshot(page, "support-3-wallet-after-void")

    assert "Voided" in page.locator(".messagelist").inner_text()
    assert balance_cells(page, "credit") == ("100.00", "100.00")
    assert balance_cells(page, "historical credit") == ("130.00", "130.00")


def test_product_moves_the_read_rollout_and_the_dashboard_follows(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=10)
    log_in(page, live_server.url, staff_in("Product"))

    page.goto(f"{live_server.url}/admin/migration/dashboard/")
    assert page.inner_text("#dashboard-rollout") == "10.0%"
    screenshot(page, "product-1-dashboard-before")

    page.goto(f"{live_server.url}/admin/migration/phase/")
    page.select_option("#id_phase", "3")
    page.fill("#id_rollout_percent", "40")
    page.fill("#id_note", "widen the cutover")
    page.click("input[name=_change]")
    page.wait_for_selector(".messagelist")
    screenshot(page, "product-2-phase-changed")
    assert re.search(r"now in phase 3", page.inner_text(".messagelist"))

    page.goto(f"{live_server.url}/admin/migration/dashboard/")
    screenshot(page, "product-3-dashboard-after")
    assert page.inner_text("#dashboard-rollout") == "40.0%"
    assert page.locator("#match-rate-chart svg").count() == 1
