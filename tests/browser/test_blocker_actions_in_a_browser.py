"""The actions on blockers in a real browser, at 1280 px: a product manager meets a parked
write on the dashboard as a red error naming what refused it, requeues it once TigerBeetle
answers again, and runs a reconciliation; support registers a transfer TigerBeetle holds that
the registry lost, with the transaction id the page offers."""

from __future__ import annotations

from typing import Any

import pytest

from flags.phases import Phase
from migration.models import ReconciliationMismatch, ReconciliationRun
from migration.reconciliation import Reconciliation
from registry.models import WalletTransfer
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
from tests.migration.gates import reconciled
from tests.migration.test_mirror import plug

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_product_requeues_a_parked_write_and_runs_a_reconciliation_from_the_dashboard(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
    settings: Any,
) -> None:
    settings.MIRROR_PARK_AFTER_ATTEMPTS = 1
    enter_phase(Phase.DUAL_WRITE)
    plugged = plug(committed_stores)
    plugged.down = True
    key = new_key()
    committed_stores.phased.add_credit(key, 10_000, tx())  # TigerBeetle down: parked
    log_in(page, live_server.url, username=staff_in("Product"))

    page.goto(f"{live_server.url}/admin/migration/dashboard/")
    notice = page.locator("#outbox-notice")
    screenshot(page, "blockers-01-parked-write-on-the-dashboard")
    assert "errornote" in (notice.get_attribute("class") or "")
    assert "TigerBeetle is unavailable" in notice.inner_text()
    assert fits_the_screen(page)

    plugged.down = False  # TigerBeetle answers again
    notice.locator("input[value='Requeue the parked entries']").click()
    page.wait_for_selector(".messagelist")
    screenshot(page, "blockers-02-requeued")
    assert "Requeued 1 parked outbox entries" in page.inner_text(".messagelist")
    assert page.locator("#outbox-notice").count() == 0
    assert committed_stores.tigerbeetle.get_balance(key).credit_minor == 10_000

    page.locator("#reconciliation-status input[value='Run a reconciliation now']").click()
    page.wait_for_selector(".messagelist")
    screenshot(page, "blockers-03-reconciliation-run")
    run = ReconciliationRun.objects.get()
    assert f"Reconciliation run {run.pk} finished: 1 wallets checked" in page.inner_text(
        ".messagelist"
    )


def test_support_registers_a_transfer_the_registry_lost_from_its_case(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, credit_id = new_key(), tx()
    committed_stores.phased.add_credit(key, 10_000, credit_id)
    WalletTransfer.objects.filter(transaction_id=credit_id).delete()  # the row is lost
    Reconciliation(committed_stores.scan, committed_stores.outbox, committed_stores.batches).run()
    mismatch = ReconciliationMismatch.objects.get(kind=ReconciliationMismatch.Kind.NOT_REGISTERED)
    log_in(page, live_server.url, username=staff_in("Support"))

    page.goto(f"{live_server.url}/admin/migration/reconciliationmismatch/")
    row = page.locator("#result_list tbody tr", has_text="no registered transaction names")
    row.locator("th a").click()
    page.wait_for_selector("#case-repair")
    screenshot(page, "blockers-04-unregistered-transfer-case")
    assert page.input_value("#id_transaction_id") == credit_id
    assert fits_the_screen(page)

    page.click("#repair-button")
    page.wait_for_selector(".messagelist")
    screenshot(page, "blockers-05-registered")
    assert f"Registered credit {credit_id}" in page.inner_text(".messagelist")
    assert WalletTransfer.objects.get(transaction_id=credit_id).amount_minor == 10_000
    mismatch.refresh_from_db()
    assert mismatch.resolved_at is not None


def test_product_meets_a_step_refused_for_a_parked_write_requeues_it_and_takes_the_step(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
    settings: Any,
) -> None:
    settings.MIRROR_PARK_AFTER_ATTEMPTS = 1
    enter_phase(Phase.DUAL_WRITE)
    reconciled(range(1, 8))  # phase 1's criterion held for 7 days: only the parked write refuses
    plugged = plug(committed_stores)
    plugged.down = True
    key = new_key()
    committed_stores.phased.add_credit(key, 2_500, tx())  # TigerBeetle down: parked
    log_in(page, live_server.url, username=staff_in("Product"))

    page.goto(f"{live_server.url}/admin/migration/phase/")
    page.select_option("#id_phase", "2")
    page.fill("#id_shadow_percent", "5")
    page.click("input[name=_change]")
    page.wait_for_selector(".errorlist.nonfield")
    screenshot(page, "blockers-06-step-refused-for-a-parked-write")
    assert "1 outbox entries are parked" in page.inner_text(".errorlist.nonfield")
    refusal = page.locator("#next-step-refusals li[data-kind='parked_entries']")
    assert refusal.count() == 1

    plugged.down = False  # TigerBeetle answers again
    refusal.locator("input[value='Requeue the parked entries']").click()
    page.wait_for_selector(".messagelist")
    screenshot(page, "blockers-07-requeued-from-the-refusal")
    assert "Requeued 1 parked outbox entries" in page.inner_text(".messagelist")
    assert "Nothing refuses the step now." in page.inner_text("#next-step-criterion")

    page.select_option("#id_phase", "2")
    page.fill("#id_shadow_percent", "5")
    page.fill("#id_note", "parked write requeued and mirrored")
    page.click("input[name=_change]")
    page.wait_for_selector(".messagelist")
    screenshot(page, "blockers-08-step-taken")
    assert "now in phase 2" in page.inner_text(".messagelist")
    assert committed_stores.tigerbeetle.get_balance(key).credit_minor == 2_500
