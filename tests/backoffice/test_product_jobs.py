"""A product manager's jobs in the admin (issue 12, items 12-17): the criterion the next step
waits for and how long it held, charts that can show the target, a phase-4 confirmation with
the numbers, an audit row per phase change, a form without silent defaults, errors that point
to the page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from backoffice import charts
from flags.models import FlagChange, Milestone, PhaseChange
from flags.phases import Phase, current_state
from migration.models import ShadowComparison
from migration.phase_change import change_phase as move_phase
from registry.models import WalletTransfer
from tests.backoffice.test_product_admin import change_phase
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from tests.migration.gates import acknowledged, criteria_held, legacy_mismatch, reconciled


@pytest.fixture(autouse=True)
def _no_settle_wait(settings: Any) -> None:
    settings.PHASE_CHANGE_SETTLE_S = 0


def comparisons(*, days_ago: int, matched: int, mismatched: int = 0) -> None:
    at = timezone.now() - timedelta(days=days_ago)
    for outcome, count in (("match", matched), ("mismatch", mismatched)):
        for _ in range(count):
            ShadowComparison.objects.create(
                client_id="c",
                country="USA",
                currency="USD",
                wallet_seq=1,
                outcome=outcome,
                mongo_credit_minor=1,
                mongo_debit_minor=0,
                mongo_historical_credit_minor=1,
                compared_at=at,
            )


def backfill_done() -> None:
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())


def next_step_criterion(page: str) -> str:
    return page.split('id="next-step-criterion"')[1].split("</div>")[0]


# --- 12. the criterion the next step waits for ---------------------------------------------


def test_in_phase_1_the_dashboard_shows_the_match_rate_criterion_with_days_held_and_data_since(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    reconciled([4], checked=10, mismatched=1)
    reconciled([3, 2, 1, 0])

    shown = next_step_criterion(product.get("/admin/migration/dashboard/").content.decode())

    assert "Next step: phase 2 - shadow read" in shown
    assert "Balance match rate above 99.99% (reconciliation" in shown
    assert "Held 4 of the 7 consecutive days needed" in shown
    assert "Data since" in shown
    days = shown.split('id="criterion-days"')[1]
    assert days.count("✓ held") == 4 and days.count("✗ missed") == 1
    assert days.count("no data") == 3
    assert 'href="/admin/migration/reconciliationmismatch/"' in shown
    assert "Fallback rate" not in shown  # only the criterion of the next step


def test_an_acknowledged_legacy_inconsistency_is_not_a_lost_write_but_is_listed(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    acknowledged(legacy_mismatch())

    shown = next_step_criterion(product.get("/admin/migration/dashboard/").content.decode())

    assert "Holds" in shown and "0 wallets mismatched in the last run" in shown
    assert "Set aside (not counted" in shown
    assert "1 acknowledged legacy wallets in the last reconciliation" in shown


def test_a_legacy_inconsistency_support_has_not_acknowledged_counts_as_a_lost_write(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    legacy_mismatch()

    shown = next_step_criterion(product.get("/admin/migration/dashboard/").content.decode())

    assert "Does not hold" in shown and "1 wallet mismatched in the last run" in shown


def test_without_a_reconciliation_the_match_rate_criterion_has_no_data_rather_than_holding(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    shown = next_step_criterion(product.get("/admin/migration/phase/").content.decode())
    assert "No data yet: no run yet." in shown
    assert 'href="/admin/migration/reconciliationrun/"' in shown


def test_in_phase_0_the_page_says_the_plan_names_no_criterion_for_dual_write(
    product: Client, stores: Stores
) -> None:
    shown = next_step_criterion(product.get("/admin/migration/phase/").content.decode())
    assert "Next step: phase 1 - dual write" in shown
    assert "None: the plan names no criterion for starting dual write" in shown
    assert "Nothing to wait for: this step has no criterion." in shown
    assert "Nothing refuses the step now." in shown


# --- 13. charts: the target visible, latency from the metrics ------------------------------


def test_the_match_rate_axis_keeps_the_target_a_tenth_of_the_way_below_100() -> None:
    bottom, top = charts.match_rate_axis(99.99)
    assert (bottom, top) == (99.9, 100.0)
    assert (top - 99.99) / (top - bottom) == pytest.approx(0.1)


def test_a_day_below_the_target_is_drawn_in_red_and_named_under_the_chart(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=10)
    comparisons(days_ago=1, matched=799, mismatched=1)  # 99.875 %: missed
    comparisons(days_ago=0, matched=10)
    page = product.get("/admin/migration/dashboard/").content.decode()
    chart = page.split('id="match-rate-chart"')[1].split("</svg>")[0]
    assert "missed the target" in chart
    missed = page.split('id="missed-days"')[1].split("</p>")[0]
    assert "99.8750 %" in missed and "Below the target on" in missed


def test_the_match_rate_chart_draws_the_target(product: Client, stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=10)
    comparisons(days_ago=1, matched=39, mismatched=1)  # 97.5 %
    comparisons(days_ago=0, matched=10)
    chart = product.get("/admin/migration/dashboard/").content.decode()
    chart = chart.split('id="match-rate-chart"')[1].split("</svg>")[0]
    assert "target 99.99 %" in chart
    assert ">0<" not in chart.split('class="axis y')[1]  # the axis does not start at 0


def test_the_latency_chart_follows_every_store_read_in_phase_4(
    product: Client, stores: Stores
) -> None:
    backfill_done()
    enter_phase(Phase.READ_CUTOVER)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.phased.get_balance(key)
    criteria_held()
    move_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    stores.phased.get_balance(key)

    page = product.get("/admin/migration/dashboard/").content.decode()

    chart = page.split('id="latency-chart"')[1].split("</svg>")[0]
    assert "MongoDB" in chart and "TigerBeetle" in chart and "balance read" in chart
    latencies = page.split('id="latencies"')[1].split("</table>")[0]
    assert "<td>balance read</td><td>TigerBeetle</td>" in latencies


# --- 14. the phase-4 confirmation says what will happen, with numbers ----------------------


def test_the_phase_4_confirmation_says_exactly_what_happens_with_the_numbers(
    product: Client, stores: Stores
) -> None:
    backfill_done()
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    criteria_held()
    stores.mongo.add_credit(new_key(), 100, tx())  # pending in the outbox, not yet mirrored
    stores.mongo.add_credit(new_key(), 100, tx())

    page = change_phase(product, 4).content.decode()

    effects = page.split('id="phase-effects"')[1].split("</ol>")[0]
    assert "The mirror applies the 2 outbox entries still pending" in effects
    assert "MongoDB is no longer written" in effects
    assert "The dual-write switch stays on" in effects
    assert "Dual write stops" not in effects
    assert current_state().phase == Phase.READ_CUTOVER


def test_the_phase_4_confirmation_shows_the_criterion_the_step_waited_for_with_its_days(
    product: Client, stores: Stores
) -> None:
    backfill_done()
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    criteria_held()

    page = change_phase(product, 4).content.decode()

    shown = page.split('id="step-criterion"')[1].split("</p>")[0]
    assert "Fallback rate below 0.1% of TigerBeetle reads on each of 7 consecutive days" in shown
    assert "Held on each of the last 7 days (7 consecutive needed)" in shown
    assert 'name="_confirm"' in page


def test_phase_4_before_its_criterion_held_is_refused_before_any_confirmation(
    product: Client, stores: Stores
) -> None:
    backfill_done()
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)

    page = change_phase(product, 4).content.decode()

    assert "Its criterion has not held on each of the last 7 days" in page
    assert "phase-effects" not in page and 'name="_confirm"' not in page
    assert current_state().phase == Phase.READ_CUTOVER


def test_leaving_phase_4_says_how_many_writes_are_copied_back(
    product: Client, stores: Stores
) -> None:
    backfill_done()
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    criteria_held()
    move_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.phased.add_credit(key, 100, tx())
    assert WalletTransfer.objects.filter(needs_copy_back=True).count() == 2

    page = change_phase(product, 3, rollout_percent="100").content.decode()

    effects = page.split('id="phase-effects"')[1].split("</ol>")[0]
    assert "2 transactions and 0 voids TigerBeetle took as the only store are copied back" in (
        effects
    )


def test_phase_4_with_parked_entries_is_refused_before_confirming_with_the_reason(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    page = change_phase(product, 4).content.decode()
    assert "The backfill has not completed" in page
    assert "phase-effects" not in page


# --- 15. one audit row per phase change, flag rows beneath ---------------------------------


def test_the_audit_shows_one_row_per_phase_change_with_the_persons_note(
    product: Client, product_user: Any, stores: Stores
) -> None:
    change_phase(product, 1, confirmed=True, note="start mirroring")
    criteria_held()
    change_phase(product, 2, shadow_percent="5", note="compare a few")

    audit = product.get("/admin/migration/phase/").content.decode()
    audit = audit.split('id="flag-audit"')[1].split("</table>")[0]

    assert audit.count('class="phase-change') == 2
    newest = audit.split('class="phase-change">')[1].split("</tr>")[0]
    assert product_user.username in newest and "compare a few" in newest
    assert "1 - dual write" in newest and "2 - shadow read" in newest
    assert "shadow read share: 0%</td><td>5%" in audit
    assert "dual write: off</td><td>on" in audit
    assert PhaseChange.objects.count() == 2
    assert FlagChange.objects.filter(phase_change__isnull=True).count() == 0


def test_a_refused_phase_change_is_kept_in_the_audit_with_the_reason(
    product: Client, stores: Stores, settings: Any
) -> None:
    # About the refusal's audit row: taken at once (four eyes: test_phase_approval.py).
    settings.FOUR_EYES_PHASE_CHANGES = False
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    backfill_done()
    criteria_held()
    from tests.migration.test_mirror import plug

    plug(stores).down = True  # TigerBeetle down: the drain cannot finish
    stores.mongo.add_credit(new_key(), 100, tx())
    change_phase(product, 4, confirmed=True, note="go")

    change = PhaseChange.objects.get()
    assert change.refused and change.note == "go"
    assert current_state().phase == Phase.READ_CUTOVER


# --- 16. the form shows the fields each phase uses; no silent defaults ---------------------


def test_phase_2_without_a_share_is_a_form_error_not_ten_percent(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    page = change_phase(product, 2).content.decode()
    assert "Phase 2 needs the share of reads to compare" in page
    assert current_state().phase == Phase.DUAL_WRITE


def test_phase_3_without_a_rollout_is_a_form_error(product: Client, stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=10)
    page = change_phase(product, 3).content.decode()
    assert "Phase 3 needs the share of clients" in page
    assert current_state().phase == Phase.SHADOW_READ


def test_the_form_prefills_only_the_share_the_current_phase_uses(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    form = product.get("/admin/migration/phase/").content.decode().split('id="phase-form"')[1]
    rollout = form.split('id="row-rollout_percent"')[1].split("</p>")[0]
    shadow = form.split('id="row-shadow_percent"')[1].split("</p>")[0]
    assert 'value="25.0"' in rollout
    assert "value=" not in shadow.split('name="shadow_percent"')[1].split(">")[0]
    assert 'data-phase="2"' in form.split('id="row-shadow_percent"')[0].rsplit("<p", 1)[1]


# --- 17. errors point to the page, not to a shell ------------------------------------------


def test_a_refusal_points_to_the_page_not_a_shell_command(product: Client, stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    page = change_phase(product, 4, confirmed=True).content.decode()
    assert "manage.py" not in page and "migration_phase" not in page
    assert "“Start the backfill” on the migration phase page" in page
    assert 'name="_backfill"' in page


def test_the_backfill_can_be_started_from_the_phase_page(product: Client, stores: Stores) -> None:
    from tests.migration.conftest import legacy_wallet

    legacy_wallet(stores, new_key(), credit_minor=100, debit_minor=0)
    response = product.post("/admin/migration/phase/", {"_backfill": "1"}, follow=True)
    assert "The backfill has been started" in response.content.decode()
    assert Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists()  # eager task


def test_support_cannot_start_the_backfill(support: Client, stores: Stores) -> None:
    assert support.post("/admin/migration/phase/", {"_backfill": "1"}).status_code == 403
