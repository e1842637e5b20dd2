"""The guard and the alerts in a real browser, at 1280 px: a product manager finds that the
guard stepped the read rollout back (the phase page's guard section and audit trail, with
what it crossed), finds its alert on the alert list, follows the mismatch's alert to the
case, and resolves the step back's alert; support reads the list and has nothing to resolve
with."""

from __future__ import annotations

from typing import Any

import pytest

from flags.phases import Phase
from migration.models import Alert
from migration.reconciliation import Reconciliation
from migration.tasks import guard as guard_task
from tests.browser.conftest import screenshot
from tests.browser.test_backoffice_in_a_browser import fits_the_screen, log_in, staff_in
from tests.migration.conftest import (  # noqa: F401 - fixtures
    Stores,
    _tasks_in_process,
    committed_stores,
    enter_phase,
    new_key,
    tx,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_product_meets_the_guards_step_back_and_resolves_its_alert_support_only_reads(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
    settings: Any,
) -> None:
    settings.GUARD_MIN_SAMPLES = 1
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    key = new_key()
    committed_stores.phased.add_credit(key, 10_000, tx())
    committed_stores.tigerbeetle.subtract_credit(key, 100, tx())  # TigerBeetle alone moved it
    Reconciliation(committed_stores.scan, committed_stores.outbox, committed_stores.batches).run()
    guard_task.delay()
    log_in(page, live_server.url, username=staff_in("Product"))

    page.goto(f"{live_server.url}/admin/migration/phase/")
    screenshot(page, "guard-01-phase-page-after-the-step-back")
    assert "stepped the read rollout back" in page.inner_text("#guard-last-check")
    assert "steps the read rollout back to 1% read rollout" in page.inner_text("#guard-does")
    assert "by the guard: mismatch_rate 100.000% > 0.100%" in page.inner_text("#flag-audit")
    assert fits_the_screen(page)

    page.goto(f"{live_server.url}/admin/migration/alert/")
    screenshot(page, "guard-02-open-alerts")
    listed = page.inner_text("#result_list")
    assert "the guard stepped the read rollout back" in listed
    assert key.describe() in listed
    assert fits_the_screen(page)

    page.click(f"#result_list a.case-link:has-text('{key.describe()}')")
    page.wait_for_selector("#content-main")
    screenshot(page, "guard-03-the-mismatch-case")
    assert "reconciliationmismatch" in page.url

    step_back = Alert.objects.get(kind=Alert.Kind.GUARD_STEP_BACK)
    page.goto(f"{live_server.url}/admin/migration/alert/")
    page.check(f"input[name=_selected_action][value='{step_back.pk}']")
    page.select_option("select[name=action]", "resolve_alerts")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    screenshot(page, "guard-04-resolved")
    assert "1 alerts resolved." in page.inner_text(".messagelist")
    assert "the guard stepped the read rollout back" not in page.inner_text("#result_list")

    page.context.clear_cookies()
    log_in(page, live_server.url, username=staff_in("Support"))
    page.goto(f"{live_server.url}/admin/migration/alert/")
    screenshot(page, "guard-05-support-reads-the-alerts")
    assert key.describe() in page.inner_text("#result_list")
    assert page.locator("select[name=action] option[value=resolve_alerts]").count() == 0
