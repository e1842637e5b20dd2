"""The back-office in a real browser, at 1280 px, as each role walks it: support finds a
client, voids with a reason (after cancelling once) and sees both balances change, finds a
MongoDB-only wallet, voids a phase-4 transaction; product sees the criterion the next step
waits for, meets the form's rules, moves the rollout, meets a wider rollout refused before
its criterion held, and reads the phase-4 confirmation; product meets a step refused for a
legacy wallet, support acknowledges it, and product's step then goes through."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from domain.ids import WalletKey
from flags.models import Milestone
from flags.phases import Phase, current_state
from migration.models import ReconciliationRun
from migration.phase_change import change_phase
from staff.models import PhaseApproval
from staff.two_factor import needs_second_factor
from tests.browser.conftest import screenshot
from tests.migration.conftest import (  # noqa: F401 - fixtures
    Stores,
    _tasks_in_process,
    committed_stores,
    enter_phase,
    legacy_wallet,
    new_key,
    tx,
)
from tests.migration.gates import (
    criteria_held,
    legacy_mismatch,
    on_day,
    reconciled,
    shadow_timed,
)
from tests.roles import role as group_for
from tests.second_factor import current_code, enrolled_authenticator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery staple"
VIEWPORT_WIDTH = 1280


def staff_in(role: str) -> str:
    name = f"{role.lower()}-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(name, password=PASSWORD, is_staff=True)
    user.groups.add(group_for(role))
    if needs_second_factor(user):
        enrolled_authenticator(user)
    return name


def log_in(page: Any, base_url: str, *, username: str) -> None:
    """The password, then the authenticator's code when the role needs a second factor."""
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    if "/two-factor/verify/" in page.url:
        device = enrolled_authenticator(get_user_model().objects.get(username=username))
        page.fill("#id_otp_token", current_code(device))
        page.click("input[type=submit]")
        page.wait_for_selector("#content-main")


def balance_cells(page: Any, field: str) -> tuple[str, str]:
    row = page.locator(f'#balances tr[data-field="{field}"]')
    return row.locator("td.mongo").inner_text(), row.locator("td.tigerbeetle").inner_text()


def fits_the_screen(page: Any) -> bool:
    """Nothing is cut off or needs a horizontal scroll at 1280 px: not the page, and no
    list inside its scrolling box."""
    return page.evaluate(
        """width => document.documentElement.scrollWidth <= width && [...document
            .querySelectorAll('.results, #content-main table')]
            .every(e => e.scrollWidth <= e.clientWidth + 1)""",
        VIEWPORT_WIDTH,
    )


def test_support_finds_a_client_voids_with_a_reason_and_sees_both_balances_change(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, debit_id = new_key(), tx()
    committed_stores.phased.add_credit(key, 10_000, tx())
    committed_stores.phased.subtract_credit(key, 3_000, debit_id)
    log_in(page, live_server.url, username=staff_in("Support"))
    screenshot(page, "support-01-index")
    assert "support: wallets and transactions" in page.inner_text("#content-main").lower()

    page.fill("#find-q", key.client_id)
    page.press("#find-q", "Enter")
    page.wait_for_selector("#balances")
    screenshot(page, "support-02-wallet-before-void")
    assert balance_cells(page, "credit") == ("$70.00", "$70.00")
    assert "MongoDB is authoritative" in page.inner_text("#authoritative-store")
    assert fits_the_screen(page)
    wallet_url = page.url

    page.locator("#mongo-log tr", has_text=debit_id).locator("a.void-link").click()
    assert "available goes from $70.00 to $100.00" in page.inner_text("#void-effects")
    page.click("#void-cancel")
    page.wait_for_selector("#balances")
    assert page.url == wallet_url  # Cancel returns to where the agent came from

    page.locator("#mongo-log tr", has_text=debit_id).locator("a.void-link").click()
    page.fill("#id_reason", "customer disputed the purchase")
    screenshot(page, "support-03-void-confirmation")
    page.click("input[name=_void]")
    page.wait_for_selector("#balances")
    screenshot(page, "support-04-wallet-after-void")

    assert page.url == wallet_url
    assert "Voided" in page.locator(".messagelist").inner_text()
    assert balance_cells(page, "credit") == ("$100.00", "$100.00")
    assert balance_cells(page, "historical_credit") == ("$130.00", "$130.00")
    assert "Voiding a debit gives the money back" in page.inner_text("#void-explanation")

    page.click("#wallet-transactions")
    page.wait_for_selector("#result_list")
    screenshot(page, "support-05-transactions-list")
    assert fits_the_screen(page)
    assert page.locator("#result_list a.wallet-link").count() == 2
    voided_row = page.locator("#result_list tr", has_text=debit_id)
    assert "customer" not in voided_row.inner_text()  # who and when, not cut off
    assert re.search(r"support-\w+, \d{4}-\d\d-\d\d", voided_row.inner_text())

    page.locator("#result_list tr", has_text="posted").locator("th a").click()
    page.wait_for_selector("#void-button")
    screenshot(page, "support-06-transaction-page")
    technical = page.locator("details", has_text="Technical details")
    assert technical.count() == 1 and technical.get_attribute("open") is None
    assert "$100.00" in page.inner_text("#content-main")
    page.click("#transaction-wallet-link")
    page.wait_for_selector("#balances")


def test_support_finds_a_wallet_only_mongodb_holds_and_is_kept_to_support_pages(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    key = new_key()
    legacy_wallet(committed_stores, key, credit_minor=11_990, debit_minor=5_245)
    enter_phase(Phase.DUAL_WRITE)
    differing = new_key()
    committed_stores.phased.add_credit(differing, 10_000, tx())
    committed_stores.tigerbeetle.subtract_credit(differing, 1, tx())  # the stores now differ
    with pytest.raises(CommandError):
        call_command("reconcile", stdout=io.StringIO())
    log_in(page, live_server.url, username=staff_in("Support"))

    page.goto(f"{live_server.url}/admin/migration/reconciliationmismatch/")
    screenshot(page, "support-07-open-mismatches")
    assert fits_the_screen(page)
    page.locator("#result_list a.wallet-link", has_text=differing.client_id).click()
    page.wait_for_selector("#balance-difference")
    screenshot(page, "support-07-wallet-that-differs")
    page.click("#recheck-button")
    page.wait_for_selector(".messagelist")
    assert "still different" in page.inner_text(".messagelist")
    assert "TigerBeetle: $99.99 available" in page.inner_text(".messagelist")

    page.fill("#find-q", key.client_id)
    page.press("#find-q", "Enter")
    page.wait_for_selector("#balances")
    screenshot(page, "support-08-mongodb-only-wallet")
    assert balance_cells(page, "credit")[0] == "$119.90"
    assert "Not in TigerBeetle yet" in page.inner_text("#content-main")

    wallet_url = page.url
    page.goto(f"{live_server.url}/admin/migration/dashboard/", referer=wallet_url)
    screenshot(page, "support-09-forbidden")
    assert "Your role does not allow this page" in page.inner_text("#forbidden")
    page.click("#forbidden-back")
    page.wait_for_selector("#balances")


def test_support_voids_a_phase_4_transaction_from_the_wallet_page(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    key = new_key()
    committed_stores.phased.add_credit(key, 10_000, tx())
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    criteria_held()
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", committed_stores.mongo, committed_stores.batches)
    phase4_debit = tx()
    committed_stores.phased.subtract_credit(key, 2_500, phase4_debit)
    log_in(page, live_server.url, username=staff_in("Support"))

    page.fill("#find-q", key.client_id)
    page.press("#find-q", "Enter")
    page.wait_for_selector("#balances")
    screenshot(page, "support-10-phase-4-wallet")
    assert "TigerBeetle is authoritative" in page.inner_text("#authoritative-store")
    assert page.locator("#balance-difference").count() == 0  # expected: MongoDB falls behind
    assert fits_the_screen(page)

    page.locator("#tb-transfers tr", has_text=phase4_debit).locator("a.void-link").click()
    page.fill("#id_reason", "charged twice")
    page.click("input[name=_void]")
    page.wait_for_selector("#balances")
    screenshot(page, "support-11-phase-4-after-void")
    assert page.locator('#balances tr[data-field="credit"] td.tigerbeetle').inner_text() == (
        "$100.00"
    )


def test_product_sees_the_next_steps_criterion_meets_the_forms_rules_and_moves_the_rollout(
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    reconciled(range(1, 8))  # the reconciliation matched every wallet for 7 days
    log_in(page, live_server.url, username=staff_in("Product"))
    screenshot(page, "product-01-index")

    page.goto(f"{live_server.url}/admin/migration/phase/")
    assert "Next step: phase 2 - shadow read" in page.inner_text("#next-step-criterion")
    assert "Held on each of the last 7 days" in page.inner_text("#next-step-criterion")
    page.select_option("#id_phase", "2")
    assert page.is_visible("#id_shadow_percent") and not page.is_visible("#id_rollout_percent")
    page.fill("#id_note", "compare a sample")
    page.click("input[name=_change]")
    page.wait_for_selector("#phase-form")
    screenshot(page, "product-02-phase-2-needs-a-share")
    assert "Phase 2 needs the share of reads" in page.inner_text("#phase-form")

    page.fill("#id_shadow_percent", "5")
    page.click("input[name=_change]")
    page.wait_for_selector(".messagelist")
    shadow_timed([7, 6, 5, 4], tb_us=900, mongo_us=1000)  # TigerBeetle not fast enough yet
    shadow_timed([3, 2, 1, 0], tb_us=200, mongo_us=1000)
    page.goto(f"{live_server.url}/admin/migration/dashboard/")
    screenshot(page, "product-03-dashboard-phase-2")
    criterion = page.inner_text("#next-step-criterion")
    assert "Held 4 of the 7 consecutive days needed" in criterion
    assert "TigerBeetle's balance read latency below 50% of MongoDB's" in criterion
    assert "target 99.99 %" in page.inner_text("#match-rate-chart")

    shadow_timed([7, 6, 5, 4], tb_us=100, mongo_us=1000, reads=20)  # the slow days recover
    page.goto(f"{live_server.url}/admin/migration/phase/")
    page.select_option("#id_phase", "3")
    assert page.is_visible("#id_rollout_percent") and not page.is_visible("#id_shadow_percent")
    page.fill("#id_rollout_percent", "1")
    page.fill("#id_note", "start the cutover")
    page.click("input[name=_change]")
    page.wait_for_selector(".messagelist")
    screenshot(page, "product-04-phase-changed-and-audit")
    assert re.search(r"now in phase 3", page.inner_text(".messagelist"))
    audit = page.locator("#flag-audit tr.phase-change")
    assert audit.count() == 2 and "start the cutover" in audit.first.inner_text()

    a_wider_rollout_is_refused_until_its_criterion_held(page)

    page.goto(f"{live_server.url}/admin/migration/dashboard/")
    screenshot(page, "product-06-dashboard")
    assert page.inner_text("#dashboard-rollout") == "1.0%"
    assert "Fallback rate below 0.1%" in page.inner_text("#next-step-criterion")
    assert page.locator("#match-rate-chart svg").count() == 1
    assert fits_the_screen(page)


def a_wider_rollout_is_refused_until_its_criterion_held(page: Any) -> None:
    """Phase 3 at 1 %: 5 % waits for the fallback rate to have held at 1 % for 7 days."""
    page.select_option("#id_phase", "3")
    page.fill("#id_rollout_percent", "5")
    page.click("input[name=_change]")
    page.wait_for_selector(".errorlist.nonfield")
    screenshot(page, "product-05-wider-rollout-refused")
    refused = page.inner_text(".errorlist.nonfield")
    assert "Its criterion has not held on each of the last 7 days" in refused
    assert "at 1% read rollout or more" in refused
    assert "override" in refused  # what would lift it, for those allowed
    assert page.locator("#override-fields").count() == 0  # product is not allowed


def legacy_wallet_in_every_run(days: int) -> WalletKey:
    """A legacy wallet whose MongoDB fields disagree, found by a reconciliation run on each
    of the last `days` days and today (9 of 10 wallets matched: 90 %)."""
    legacy = WalletKey(f"legacy-{uuid.uuid4().hex[:6]}", "USA", "USD", None)
    for days_ago in range(days, -1, -1):
        at = on_day(days_ago)
        run = ReconciliationRun.objects.create(
            started_at=at, finished_at=at, checked=10, matched=9, mismatched=1
        )
        legacy_mismatch(run=run, key=legacy)
    return legacy


def support_acknowledges(browser: Any, base_url: str, *, legacy: WalletKey) -> None:
    """Support, in a browser of their own, acknowledges the wallet from the open mismatches,
    with the reason the form requires."""
    context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": 900})
    support = context.new_page()
    support.set_default_timeout(15_000)
    log_in(support, base_url, username=staff_in("Support"))
    support.goto(f"{base_url}/admin/migration/reconciliationmismatch/")
    row = support.locator("#result_list tr", has_text=legacy.client_id)
    assert "support can acknowledge it" in row.inner_text()
    row.locator("input.action-select").check()
    support.select_option("select[name=action]", "acknowledge_legacy_cases")
    support.click("button[name=index]")
    support.wait_for_selector("#legacy-candidates")
    screenshot(support, "legacy-03-support-acknowledges")
    assert support.get_attribute("#id_reason", "required") is not None  # no decision without
    support.fill("#id_reason", "legacy top-up bug of 2019, ticket SUP-42")
    support.click("input[name=apply]")
    support.wait_for_selector(".messagelist")
    screenshot(support, "legacy-04-acknowledged")
    assert "acknowledged as a legacy inconsistency" in support.inner_text(".messagelist")
    context.close()


def test_product_meets_a_step_refused_for_a_legacy_wallet_until_support_acknowledges_it(
    browser: Any,
    page: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    legacy = legacy_wallet_in_every_run(7)
    log_in(page, live_server.url, username=staff_in("Product"))

    page.goto(f"{live_server.url}/admin/migration/phase/")
    screenshot(page, "legacy-01-product-sees-the-refusals")
    refusals = page.inner_text("#next-step-refusals")
    assert "1 wallet differs in the last reconciliation" in refusals
    assert "acknowledged by support" in refusals
    assert "Its criterion has not held" in refusals
    page.select_option("#id_phase", "2")
    page.fill("#id_shadow_percent", "5")
    page.click("input[name=_change]")
    page.wait_for_selector(".errorlist.nonfield")
    screenshot(page, "legacy-02-product-step-refused")
    assert "1 wallet differs in the last reconciliation" in page.inner_text(".errorlist.nonfield")

    support_acknowledges(browser, live_server.url, legacy=legacy)

    page.goto(f"{live_server.url}/admin/migration/phase/")
    screenshot(page, "legacy-05-product-sees-it-set-aside")
    criterion = page.inner_text("#next-step-criterion")
    assert f"{legacy.client_id} USA USD" in page.inner_text("#criterion-set-aside")
    assert "Held on each of the last 8 days (7 consecutive needed)" in criterion
    assert "Nothing refuses the step now." in criterion
    page.select_option("#id_phase", "2")
    page.fill("#id_shadow_percent", "5")
    page.fill("#id_note", "legacy wallet acknowledged by support")
    page.click("input[name=_change]")
    page.wait_for_selector(".messagelist")
    screenshot(page, "legacy-06-product-step-taken")
    assert "now in phase 2" in page.inner_text(".messagelist")
    assert page.locator("#dashboard-phase, #current-phase").first.inner_text() == "2 - shadow read"


def test_product_reads_what_phase_4_will_do_before_confirming_and_a_second_approves(
    page: Any,
    browser: Any,
    live_server: Any,
    committed_stores: Stores,  # noqa: F811
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    criteria_held()
    committed_stores.mongo.add_credit(new_key(), 100, tx())  # pending in the outbox
    log_in(page, live_server.url, username=staff_in("Product"))

    page.goto(f"{live_server.url}/admin/migration/phase/")
    page.select_option("#id_phase", "4")
    page.fill("#id_note", "TigerBeetle takes over")
    page.click("input[name=_change]")
    page.wait_for_selector("#phase-effects")
    screenshot(page, "product-06-phase-4-confirmation")
    effects = page.inner_text("#phase-effects")
    assert "The mirror applies the 1 outbox entries still pending" in effects
    assert "Dual write stops" not in effects
    page.click("input[name=_confirm]")
    page.wait_for_selector(".messagelist")
    # Four eyes (issue 27): entering phase 4 waits for another person's approval.
    filed = page.inner_text(".messagelist")
    assert "waits for another person's approval because it enters phase 4" in filed
    assert "Waiting for a second person's approval" in page.inner_text("#pending-approval")
    screenshot(page, "product-07-phase-4-waits-for-approval")
    assert current_state().phase == Phase.READ_CUTOVER
    request = PhaseApproval.objects.get()
    page.goto(f"{live_server.url}/admin/staff/phaseapproval/{request.pk}/decide/")
    assert "another person decides it" in page.inner_text("#cannot-decide")

    approver = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": 900}).new_page()
    log_in(approver, live_server.url, username=staff_in("Product"))
    approver.goto(f"{live_server.url}/admin/staff/phaseapproval/")
    approver.click("a.decide-link")
    approver.wait_for_selector("#decide-form")
    assert "it enters phase 4" in approver.inner_text("#phase-request")
    approver.fill("#id_reason", "read the effects: 1 entry to mirror")
    approver.click("input[name=_approve]")
    approver.wait_for_selector(".messagelist")
    screenshot(approver, "product-08-phase-4-approved")
    assert "Approved: the migration is now in phase 4" in approver.inner_text(".messagelist")
    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    approver.goto(f"{live_server.url}/admin/migration/phase/")
    assert "approved by" in approver.inner_text("#flag-audit")
    approver.context.close()
