"""An action for every blocker (issue 21, item 5), in the admin, each with its own permission
and audited: requeue parked outbox entries, run a reconciliation now (queued, with its
progress), re-check a wallet from wherever a differing wallet shows; and warnings as strong
as the problem: a parked write is an error, an old pending one a warning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from domain.ids import WalletKey
from flags.models import Milestone
from flags.phases import Phase
from migration.backfill import Backfill
from migration.legacy_scan import LegacyScan
from migration.models import (
    BlockerAction,
    ReconciliationMismatch,
    ReconciliationRun,
    ShadowComparison,
)
from migration.phase_change import change_phase
from migration.reconciliation import Reconciliation
from registry.models import WalletAccount, WalletTransfer
from tests.backoffice.conftest import client_for, user_in
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx
from tests.migration.test_mirror import plug

DASHBOARD = "/admin/migration/dashboard/"
PHASE_PAGE = "/admin/migration/phase/"
REQUEUE = "/admin/migration/blockers/requeue-parked/"
RECONCILE = "/admin/migration/blockers/reconcile/"
RECHECK_MISMATCHED = "/admin/migration/blockers/recheck-mismatched/"


def parked_wallet(stores: Stores) -> WalletKey:
    """A wallet whose last debit TigerBeetle refused (the stores diverged): parked."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.tigerbeetle.subtract_credit(key, 100, tx())  # TigerBeetle alone loses the funds
    stores.phased.subtract_credit(key, 60, tx())  # mirrored at once: refused, parked
    assert stores.outbox.depth().parked == 1
    return key


def unreachable_parked_wallet(stores: Stores, settings: Any) -> tuple[WalletKey, Any]:
    """A wallet whose credit the mirror gave up on while TigerBeetle did not answer; the plug
    is given back, TigerBeetle down."""
    settings.MIRROR_PARK_AFTER_ATTEMPTS = 1
    enter_phase(Phase.DUAL_WRITE)
    plugged = plug(stores)
    plugged.down = True
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    assert stores.outbox.waiting_of(key).parked == 1
    return key, plugged


def wallet_page(client: Client, key: WalletKey) -> str:
    row = WalletAccount.objects.get(client_id=key.client_id)
    return client.get(f"/admin/registry/walletaccount/{row.pk}/change/").content.decode()


def element(page: str, *, element_id: str) -> str:
    """The element with this id, to the end of its first closing tag."""
    start = page.index(f'id="{element_id}"')
    return page[page.rindex("<", 0, start) : page.index("</div>", start)]


def key_fields(key: WalletKey) -> dict[str, str]:
    return {"client_id": key.client_id, "country": key.country, "currency": key.currency}


# --- warnings as strong as the problem -----------------------------------------------------


def test_a_parked_write_is_an_error_on_the_dashboard_naming_what_refused_it(
    product: Client, stores: Stores
) -> None:
    parked_wallet(stores)
    page = product.get(DASHBOARD).content.decode()
    notice = element(page, element_id="outbox-notice")
    assert 'class="errornote outbox-error"' in notice
    assert "1 write is parked: TigerBeetle does not hold" in notice
    assert "TigerBeetle refused: exceeds_credits" in notice
    assert "within seconds" not in notice
    assert 'value="Requeue the parked entries"' in notice


def test_the_phase_page_shows_the_parked_write_as_an_error_too(
    product: Client, stores: Stores
) -> None:
    parked_wallet(stores)
    page = product.get(PHASE_PAGE).content.decode()
    assert "errornote outbox-error" in element(page, element_id="outbox-notice")
    # Parked entries refuse the step forward; the refusal offers the requeue.
    refusals = page.split('id="next-step-refusals"')[1].split("</ul>")[0]
    assert "1 outbox entries are parked" in refusals
    assert 'data-action="requeue_parked"' in refusals


def test_on_the_wallet_page_a_parked_write_is_an_error_with_its_reason_and_its_action(
    support: Client, stores: Stores
) -> None:
    key = parked_wallet(stores)
    page = wallet_page(support, key)
    notice = element(page, element_id="wallet-mirror")
    assert "errornote" in notice and "mirror-error" in notice
    assert "1 write is parked on this wallet" in notice
    assert "TigerBeetle refused: exceeds_credits" in notice
    assert 'id="requeue-wallet-button"' in notice
    assert 'class="errornote" id="balance-difference"' in page
    assert "within seconds" not in page


def test_a_write_pending_past_the_warning_age_is_a_warning(
    support: Client, product: Client, stores: Stores, settings: Any
) -> None:
    settings.OUTBOX_PENDING_WARN_S = 60
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.mongo.add_credit(key, 100, tx())  # written, never mirrored
    stores.mongo.database.log().update_many(
        {}, {"$set": {"created_at": datetime.now(UTC) - timedelta(minutes=10)}}
    )
    stores.tigerbeetle.add_credit(key, 1, tx())  # the wallet exists in TigerBeetle too
    page = wallet_page(support, key)
    notice = element(page, element_id="wallet-mirror")
    assert "warningnote" in notice and "for 10 min" in notice
    assert "OUTBOX_PENDING_WARN_S" in notice
    dashboard = element(product.get(DASHBOARD).content.decode(), element_id="outbox-notice")
    assert "warningnote" in dashboard and "the oldest for 10 min" in dashboard


def test_a_fresh_pending_write_stays_information(support: Client, stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.mongo.add_credit(key, 100, tx())
    query = {"client_id": key.client_id, "country": "USA", "currency": "USD"}
    page = support.get("/admin/registry/walletaccount/key/", query).content.decode()
    notice = element(page, element_id="wallet-mirror")
    assert "infonote" in notice and "still waiting for the mirror" in notice
    assert 'id="balance-difference"' not in page


# --- requeue parked entries ----------------------------------------------------------------


def test_product_requeues_parked_entries_from_the_dashboard_once_the_cause_is_fixed(
    product: Client, product_user: Any, stores: Stores, settings: Any
) -> None:
    key, plugged = unreachable_parked_wallet(stores, settings)
    assert "TigerBeetle is unavailable" in product.get(DASHBOARD).content.decode()
    plugged.down = False  # the cause fixed: TigerBeetle answers again

    response = product.post(REQUEUE, {"next": DASHBOARD}, follow=True)

    assert response.redirect_chain[-1][0] == DASHBOARD
    page = response.content.decode()
    assert "Requeued 1 parked outbox entries of every wallet; the mirror is queued" in page
    assert stores.outbox.depth().parked == 0
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    action = BlockerAction.objects.get()
    assert (action.actor, action.action) == (product_user.username, "requeue_parked")
    assert 'id="outbox-notice"' not in page


def test_a_write_tigerbeetle_refused_is_said_to_be_beyond_a_requeue(
    product: Client, stores: Stores
) -> None:
    parked_wallet(stores)
    assert "a requeue cannot apply it" in product.get(DASHBOARD).content.decode()
    page = product.post(REQUEUE, {"next": DASHBOARD}, follow=True).content.decode()
    assert "parked again with the reason" in page
    assert stores.outbox.depth().parked == 1
    assert "id_already_failed" in element(page, element_id="outbox-notice")


def test_support_requeues_one_wallets_parked_entries_from_its_page(
    support: Client, stores: Stores, settings: Any
) -> None:
    key, plugged = unreachable_parked_wallet(stores, settings)
    other = new_key()
    stores.phased.add_credit(other, 100, tx())
    plugged.down = False
    stores.tigerbeetle.add_credit(key, 1, tx())  # the wallet's registry row, for its page
    row = WalletAccount.objects.get(client_id=key.client_id)
    back = f"/admin/registry/walletaccount/{row.pk}/change/"

    response = support.post(REQUEUE, {**key_fields(key), "next": back}, follow=True)

    assert response.redirect_chain[-1][0] == back
    assert f"of wallet {key.describe()}" in response.content.decode()
    assert not stores.outbox.waiting_of(key).parked
    assert stores.outbox.waiting_of(other).parked == 1
    assert BlockerAction.objects.get().client_id == key.client_id


def test_requeueing_needs_its_own_permission(stores: Stores) -> None:
    parked_wallet(stores)
    nobody = client_for(user_in(None))
    assert nobody.post(REQUEUE).status_code == 403
    assert stores.outbox.depth().parked == 1
    assert not BlockerAction.objects.exists()


def test_a_blocker_tells_one_without_the_permission_who_may_act(stores: Stores) -> None:
    parked_wallet(stores)
    viewer = user_in(None)
    from tests.conftest import grant

    grant(viewer, "migration.view_migration_dashboard")
    page = client_for(viewer).get(DASHBOARD).content.decode()
    assert 'value="Requeue the parked entries"' not in page
    assert "Support or Product can requeue them" in page


def test_the_actions_answer_only_a_post(support: Client) -> None:
    for url in (REQUEUE, RECONCILE, RECHECK_MISMATCHED):
        assert support.get(url).status_code == 405


# --- run a reconciliation now --------------------------------------------------------------


def test_product_runs_a_reconciliation_from_the_dashboard(
    product: Client, product_user: Any, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    stores.phased.add_credit(new_key(), 100, tx())
    page = product.get(DASHBOARD).content.decode()
    assert 'value="Run a reconciliation now"' in element(page, element_id="reconciliation-status")

    response = product.post(RECONCILE, {"next": DASHBOARD}, follow=True)

    run = ReconciliationRun.objects.get()
    assert run.triggered_by == f"{product_user.username} (admin)"
    assert (run.status, run.checked, run.wallets_total) == ("finished", 1, 1)
    assert f"Reconciliation run {run.pk} finished: 1 wallets checked" in response.content.decode()
    assert BlockerAction.objects.get(action="run_reconciliation").run == run


def test_a_reconciliation_is_not_queued_twice(support: Client, stores: Stores) -> None:
    running = ReconciliationRun.objects.create(triggered_by="schedule", wallets_total=10)
    page = support.post(RECONCILE, {"next": DASHBOARD}, follow=True).content.decode()
    assert "A reconciliation is running already" in page
    assert list(ReconciliationRun.objects.all()) == [running]


def test_the_run_list_shows_a_runs_progress_and_refreshes_while_it_runs(
    support: Client, stores: Stores
) -> None:
    ReconciliationRun.objects.create(
        triggered_by="someone (admin)", wallets_total=20_000, checked=12_000
    )
    page = support.get("/admin/migration/reconciliationrun/").content.decode()
    assert "running: 12,000 of 20,000 wallets" in page
    assert '<meta http-equiv="refresh"' in page
    assert "This page refreshes until it finishes" in page


def test_a_finished_run_list_does_not_refresh_and_offers_a_run(
    support: Client, stores: Stores
) -> None:
    Reconciliation(stores.scan, stores.outbox, stores.batches).run(triggered_by="test")
    page = support.get("/admin/migration/reconciliationrun/").content.decode()
    assert "finished in" in page
    assert '<meta http-equiv="refresh"' not in page
    assert 'value="Run a reconciliation now"' in page


def test_a_run_saves_its_progress_after_each_page(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    for _ in range(5):
        stores.phased.add_credit(new_key(), 100, tx())
    seen: list[tuple[int | None, int]] = []

    class Watched(LegacyScan):
        def wallet_batches(self, batch_size: int) -> Any:
            for page in super().wallet_batches(batch_size):
                run = ReconciliationRun.objects.get()
                seen.append((run.wallets_total, run.checked))
                yield page

    Reconciliation(Watched(stores.mongo.database), stores.outbox, stores.batches).run(page_size=2)

    assert seen == [(5, 0), (5, 2), (5, 4)]


def test_the_task_takes_the_queued_run_a_person_asked_for(stores: Stores) -> None:
    from migration.tasks import reconcile

    queued = ReconciliationRun.objects.create(triggered_by="someone (admin)")
    assert queued.status == "queued"
    result = reconcile.delay(queued.triggered_by, run_id=queued.pk).get()
    queued.refresh_from_db()
    assert result["run_id"] == queued.pk and queued.status == "finished"
    assert reconcile.delay("again", run_id=queued.pk).get() == {
        "skipped": f"run {queued.pk} is gone or finished"
    }


def test_running_a_reconciliation_needs_its_own_permission(stores: Stores) -> None:
    assert client_for(user_in(None)).post(RECONCILE).status_code == 403
    assert not ReconciliationRun.objects.exists()


# --- re-check a wallet from wherever it shows ----------------------------------------------


@pytest.fixture
def differing_wallet(stores: Stores) -> WalletKey:
    """A mirrored wallet TigerBeetle alone changed, found by a reconciliation."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 10_000, tx())
    stores.tigerbeetle.subtract_credit(key, 1, tx())
    assert Reconciliation(stores.scan, stores.outbox, stores.batches).run().mismatched == 1
    return key


def test_the_dashboard_blocker_rechecks_the_differing_wallets(
    product: Client, product_user: Any, stores: Stores, differing_wallet: WalletKey
) -> None:
    page = product.get(DASHBOARD).content.decode()
    # Open mismatches refuse the step forward; the refusal offers the re-check.
    refusals = page.split('id="next-step-refusals"')[1].split("</ul>")[0]
    assert "1 wallet differs in the last reconciliation" in refusals
    assert 'data-action="recheck_mismatched"' in refusals
    stores.mongo.subtract_credit(differing_wallet, 1, tx(), mirror=False)  # they agree again

    response = product.post(RECHECK_MISMATCHED, {"next": DASHBOARD}, follow=True)

    assert "Re-checked 1 wallets: 1 agree now." in response.content.decode()
    mismatch = ReconciliationMismatch.objects.get()
    assert mismatch.resolved_by == product_user.username
    assert BlockerAction.objects.get().action == "recheck_wallet"


def test_a_mismatchs_page_offers_the_wallets_recheck(
    support: Client, stores: Stores, differing_wallet: WalletKey
) -> None:
    mismatch = ReconciliationMismatch.objects.get()
    url = f"/admin/migration/reconciliationmismatch/{mismatch.pk}/change/"
    page = support.get(url).content.decode()
    assert 'id="recheck-button"' in page

    response = support.post(
        "/admin/registry/walletaccount/recheck/",
        {**key_fields(differing_wallet), "next": url},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == url
    assert "still different" in response.content.decode()


def test_the_wallet_page_offers_a_recheck_in_phase_0_once_both_stores_hold_the_wallet(
    support: Client, stores: Stores
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    assert 'id="recheck-button"' in wallet_page(support, key)


def test_the_wallet_page_offers_a_recheck_in_phase_4(
    support: Client, stores: Stores, settings: Any, criteria_not_awaited: None
) -> None:
    settings.PHASE_CHANGE_SETTLE_S = 0
    enter_phase(Phase.READ_CUTOVER)  # phase 4 is entered from phase 3 at 100 % rollout
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    page = wallet_page(support, key)
    assert 'id="recheck-button"' in page
    response = support.post("/admin/registry/walletaccount/recheck/", key_fields(key), follow=True)
    assert "both stores agree now" in response.content.decode()


def test_a_recheck_never_resolves_a_transfer_registry_case(support: Client, stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run()
    case = ReconciliationMismatch.objects.create(
        run=run,
        kind=ReconciliationMismatch.Kind.TRANSFER_MISSING,
        **key.as_columns(),
        detail="TigerBeetle does not hold this registered credit.",
    )
    support.post("/admin/registry/walletaccount/recheck/", key_fields(key))
    case.refresh_from_db()
    assert case.resolved_at is None


def test_the_actions_audit_trail_is_listed_for_support_and_product(
    support: Client, product: Client, stores: Stores
) -> None:
    parked_wallet(stores)
    support.post(REQUEUE)
    for client in (support, product):
        page = client.get("/admin/migration/blockeraction/").content.decode()
        assert "requeued parked outbox entries" in page


def test_a_mismatched_shadow_comparisons_wallet_is_rechecked_from_the_list(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 10_000, tx())
    stores.tigerbeetle.subtract_credit(key, 1, tx())  # TigerBeetle alone changes
    stores.phased.get_balance(key)  # compared on TigerBeetle: a mismatch
    comparison = ShadowComparison.objects.get(outcome="mismatch")

    page = product.post(
        "/admin/migration/shadowcomparison/",
        {"action": "recheck_wallets", "_selected_action": [comparison.pk]},
        follow=True,
    ).content.decode()

    assert f"Re-check of wallet {key.describe()}: still different" in page


def test_a_transfer_registry_difference_is_its_own_blocker_pointing_to_its_repair(
    product: Client, stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, credit_id = new_key(), tx()
    stores.phased.add_credit(key, 100, credit_id)
    WalletTransfer.objects.filter(transaction_id=credit_id).delete()  # the registry lost it
    Reconciliation(stores.scan, stores.outbox, stores.batches).run()

    page = product.get(DASHBOARD).content.decode()

    refusals = page.split('id="next-step-refusals"')[1].split("</ul>")[0]
    assert "1 differences between the transfer registry and TigerBeetle" in refusals
    assert "differs in the last" not in refusals and "differ in the last" not in refusals
    assert 'data-action="recheck_mismatched"' not in refusals
