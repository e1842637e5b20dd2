"""Reconciliation: every wallet's three fields in both stores, the registry against
TigerBeetle, each run and mismatch recorded, alerts raised."""

from __future__ import annotations

from dataclasses import replace
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from tigerbeetle import Account

from domain.ids import IdSpace, u128_to_hex
from flags.phases import Phase
from ledger.batches import LedgerBatches
from ledger.tb_model import wallet_account
from migration.backfill import Backfill
from migration.models import ReconciliationMismatch
from migration.reconciliation import Reconciliation, wallet_account_id_pages
from registry.models import WalletAccount
from tests.conftest import ledger_scope
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, phased_over, tx


def reconcile(stores: Stores) -> Any:
    return Reconciliation(stores.scan, stores.outbox, stores.batches).run(triggered_by="test")


def mirrored_wallets(stores: Stores, count: int) -> list[Any]:
    enter_phase(Phase.DUAL_WRITE)
    keys = [new_key() for _ in range(count)]
    for number, key in enumerate(keys):
        stores.phased.add_credit(key, 1_000 + number, tx())
        if number:  # stores take positive amounts only
            stores.phased.subtract_credit(key, number, tx())
    return keys


def test_a_run_over_agreeing_stores_records_every_wallet_matched(stores: Stores) -> None:
    mirrored_wallets(stores, 12)
    run = reconcile(stores)
    assert (run.checked, run.matched, run.mismatched) == (12, 12, 0)
    assert run.finished_at is not None and run.duration_s is not None


def test_a_balance_difference_is_recorded_with_both_values(stores: Stores) -> None:
    key = mirrored_wallets(stores, 3)[1]
    stores.tigerbeetle.subtract_credit(key, 7, tx())  # TigerBeetle alone changes

    run = reconcile(stores)

    assert (run.checked, run.mismatched) == (3, 1)
    mismatch = run.mismatches.get()
    assert mismatch.kind == ReconciliationMismatch.Kind.BALANCE
    assert (mismatch.mongo_credit_minor, mismatch.tb_credit_minor) == (1_000, 993)
    assert (mismatch.mongo_debit_minor, mismatch.tb_debit_minor) == (1, 8)


def test_wallets_with_the_same_open_holds_in_both_stores_match(stores: Stores) -> None:
    key = mirrored_wallets(stores, 1)[0]
    stores.phased.place_hold(key, 400, f"hold-{tx()}", timeout_s=3600)

    run = reconcile(stores)

    assert (run.checked, run.matched, run.mismatched) == (1, 1, 0)


def test_a_held_amount_only_one_store_holds_is_a_mismatch_of_its_own_kind(
    stores: Stores,
) -> None:
    key = mirrored_wallets(stores, 1)[0]
    stores.tigerbeetle.place_hold(key, 300, f"hold-{tx()}", timeout_s=3600)  # TigerBeetle alone

    run = reconcile(stores)

    mismatch = run.mismatches.get()
    assert mismatch.kind == ReconciliationMismatch.Kind.HELD
    assert (mismatch.mongo_held_minor, mismatch.tb_held_minor) == (0, 300)
    assert (mismatch.mongo_credit_minor, mismatch.tb_credit_minor) == (1_000, 700)


def test_mirror_lag_is_not_reported_as_a_mismatch(stores: Stores) -> None:
    key = mirrored_wallets(stores, 1)[0]

    lagging = phased_over(stores, enqueue_mirror=lambda k: None)
    lagging.add_credit(key, 5, tx())

    run = reconcile(stores)

    assert (run.matched, run.mismatched) == (1, 0)


def writing_during_the_second_look(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, key: Any, *, before_the_read: bool
) -> list[str]:
    """A client credits `key` (its mirror lagging) during the run's first MongoDB read of
    a differing wallet: just before it or just after it. Returns the ids written."""
    read = stores.scan.snapshots
    lagging = phased_over(stores, enqueue_mirror=lambda k: None)
    written: list[str] = []

    def snapshots(keys: Any) -> Any:
        if written:
            return read(keys)
        written.append(tx())
        if before_the_read:
            lagging.add_credit(key, 5, written[0])
            return read(keys)
        found = read(keys)
        lagging.add_credit(key, 5, written[0])
        return found

    monkeypatch.setattr(stores.scan, "snapshots", snapshots)
    return written


@pytest.mark.parametrize("before_the_read", [True, False], ids=["before", "after"])
def test_a_write_landing_while_a_differing_wallet_is_looked_at_again_is_not_a_mismatch(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, before_the_read: bool
) -> None:
    key = mirrored_wallets(stores, 1)[0]
    phased_over(stores, enqueue_mirror=lambda k: None).add_credit(key, 7, tx())  # it differs
    written = writing_during_the_second_look(
        stores, monkeypatch, key, before_the_read=before_the_read
    )

    run = reconcile(stores)

    assert written  # the write landed during the run
    assert (run.checked, run.matched, run.mismatched) == (1, 1, 0)


class WritingAfterTheFirstPass(LedgerBatches):
    """The batch port of a run during which a client credits a wallet (mirrored at once)
    after the run read every account, before it compares MongoDB."""

    def __init__(self, stores: Stores, key: Any) -> None:
        super().__init__(stores.tigerbeetle.backend, scope=ledger_scope())
        self.write: Any = lambda: stores.phased.add_credit(key, 700, tx())

    def wallet_accounts_page(self, *, timestamp_min: int, limit: int) -> Any:
        if self.write is not None:
            write, self.write = self.write, None
            write()
        return super().wallet_accounts_page(timestamp_min=timestamp_min, limit=limit)


def test_a_wallet_written_after_its_account_was_read_matches_without_a_second_look(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = mirrored_wallets(stores, 1)[0]
    during = WritingAfterTheFirstPass(stores, key)
    looked_again: list[Any] = []
    read = stores.scan.snapshots
    monkeypatch.setattr(
        stores.scan, "snapshots", lambda keys: looked_again.append(keys) or read(keys)
    )

    run = Reconciliation(stores.scan, stores.outbox, during).run(triggered_by="test")

    assert during.write is None  # it happened
    assert (run.matched, run.mismatched) == (1, 0)
    assert looked_again == []


def test_legacy_wallets_before_the_backfill_are_counted_apart(stores: Stores) -> None:
    legacy_wallet(stores, new_key(), credit_minor=10, debit_minor=0)
    run = reconcile(stores)
    assert (run.checked, run.mismatched, run.awaiting_backfill) == (0, 0, 1)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    run = reconcile(stores)
    assert (run.checked, run.matched, run.awaiting_backfill) == (1, 1, 0)


def test_a_registry_row_without_its_account_is_found(stores: Stores) -> None:
    WalletAccount.objects.create(
        client_id="ghost",
        country="USA",
        currency="USD",
        tb_account_id_hex=u128_to_hex(99),
        ledger=840,
    )
    run = reconcile(stores)
    assert run.rows_without_account == 1
    assert run.mismatches.get().kind == ReconciliationMismatch.Kind.ROW_WITHOUT_ACCOUNT


def test_a_wallet_account_without_a_registry_row_is_found(stores: Stores) -> None:
    orphan_id = ledger_scope().ids.account_id(new_key())
    stores.tigerbeetle.backend.create_accounts(
        [Account(id=orphan_id, ledger=840, code=ledger_scope().codes.wallet)]
    )
    run = reconcile(stores)
    assert run.accounts_without_row == 1
    assert run.mismatches.get().tb_account_id_hex == u128_to_hex(orphan_id)


def test_accounts_of_other_applications_on_the_cluster_are_never_reported(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    mirrored_wallets(stores, 2)
    # Another application's wallet code: any other valid code (16 bits, not 0); the test's own
    # wallet code may be anywhere in 1000-65535 on a real cluster.
    foreign_codes = [1, 2, ledger_scope().codes.wallet - 1, ledger_scope().codes.system]
    stores.tigerbeetle.backend.create_accounts(
        [
            Account(
                id=ledger_scope().ids.account_id(new_key()), ledger=840, code=code, user_data_32=840
            )
            for code in foreign_codes
        ]
    )

    run = reconcile(stores)

    assert (run.checked, run.matched, run.accounts_without_row) == (2, 2, 0)
    assert not run.mismatches.exists()
    assert "reconciliation alert" not in caplog.text


def test_another_deployments_wallet_accounts_with_the_same_codes_are_never_reported(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    """Staging beside production on one cluster: same account codes, another namespace."""
    mirrored_wallets(stores, 2)
    other = replace(ledger_scope(), ids=IdSpace(f"{ledger_scope().ids.namespace}:staging"))
    key = new_key()  # registered in the other deployment's own database, not in this one
    account = wallet_account(key, account_id=other.ids.account_id(key), ledger=840, scope=other)
    stores.tigerbeetle.backend.create_accounts([account])

    run = reconcile(stores)

    assert (run.checked, run.matched, run.accounts_without_row) == (2, 2, 0)
    assert "reconciliation alert" not in caplog.text


def test_an_orphan_account_created_before_stamps_is_still_reported(stores: Stores) -> None:
    key = new_key()
    stamped = wallet_account(
        key, account_id=ledger_scope().ids.account_id(key), ledger=840, scope=ledger_scope()
    )
    stores.tigerbeetle.backend.create_accounts([replace(stamped, user_data_32=840)])

    run = reconcile(stores)

    assert run.accounts_without_row == 1
    assert run.mismatches.get().tb_account_id_hex == u128_to_hex(stamped.id)


def test_wallet_account_paging_reaches_past_one_page(stores: Stores) -> None:
    mirrored_wallets(stores, 5)
    pages = list(wallet_account_id_pages(stores.batches, page_size=2))
    assert [len(page) for page in pages] == [2, 2, 1]
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run(page_size=2)
    assert (run.checked, run.matched, run.accounts_without_row) == (5, 5, 0)


def test_a_mismatch_posts_the_run_and_the_wallet_to_the_webhook_once_each(
    stores: Stores, alert_webhook: list[dict[str, Any]]
) -> None:
    received = alert_webhook
    key = mirrored_wallets(stores, 1)[0]
    stores.tigerbeetle.subtract_credit(key, 1, tx())

    run = reconcile(stores)
    reconcile(stores)  # seen again: counted on the open alerts, not sent again

    assert [body["alert"] for body in received] == [
        "reconciliation_run",
        "reconciliation_mismatch",
    ]
    assert received[0]["figures"] == {
        "run_id": run.pk,
        "checked": 1,
        "mismatched": 1,
        "rows_without_account": 0,
        "accounts_without_row": 0,
        "transfer_differences": 0,
        "error": "",
    }
    assert received[1]["wallet"] == key.as_dict()
    assert received[1]["figures"]["mongo_minor"] == [1000, 0, 1000]
    assert received[1]["figures"]["tigerbeetle_minor"] == [999, 1, 1000]
    mismatch = run.mismatches.get()
    assert received[1]["link"] == (
        f"http://backoffice.test/admin/migration/reconciliationmismatch/{mismatch.pk}/change/"
    )


def test_an_unreachable_webhook_does_not_fail_the_run(stores: Stores, settings: Any) -> None:
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    key = mirrored_wallets(stores, 1)[0]
    stores.tigerbeetle.subtract_credit(key, 1, tx())
    assert reconcile(stores).mismatched == 1


def test_in_phase_four_only_the_registry_is_checked(stores: Stores) -> None:
    from flags.audit import apply_state
    from flags.phases import state_for_phase

    mirrored_wallets(stores, 2)
    apply_state(state_for_phase(Phase.TIGERBEETLE_ONLY), actor="test")
    run = reconcile(stores)
    assert (run.checked, run.rows_without_account) == (0, 0)
    assert "phase 4" in run.note


def test_the_command_prints_the_run_and_fails_on_mismatch(stores: Stores) -> None:
    key = mirrored_wallets(stores, 2)[0]
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "checked 2, matched 2, mismatched 0" in out.getvalue()
    stores.tigerbeetle.subtract_credit(key, 1, tx())
    with pytest.raises(CommandError, match="mismatches found"):
        call_command("reconcile", stdout=StringIO())


def test_the_celery_task_records_a_run(stores: Stores) -> None:
    from migration.tasks import reconcile as reconcile_task

    mirrored_wallets(stores, 2)
    result = reconcile_task.delay("test").get()
    assert (result["checked"], result["matched"]) == (2, 2)


def test_in_phase_zero_wallets_created_through_the_api_raise_no_alarm(
    stores: Stores, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        response = api.post(
            f"/api/clients/{key.client_id}/wallets/USA/USD/credits",
            {"transaction_id": tx(), "amount": "5.00"},
            format="json",
        )
        assert response.status_code == 201

    run = reconcile(stores)

    assert (run.checked, run.mismatched, run.awaiting_backfill) == (0, 0, 3)
    assert not run.mismatches.exists()
    assert "reconciliation alert" not in caplog.text


def test_in_phase_zero_writes_waiting_for_dual_write_are_not_a_mismatch(stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    stores.phased.add_credit(key, 250, tx())  # phase 0: stays in the outbox

    run = reconcile(stores)

    assert (run.checked, run.mismatched, run.awaiting_backfill) == (0, 0, 1)


def test_in_phase_zero_a_backfilled_wallet_that_differs_still_alerts(stores: Stores) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    stores.tigerbeetle.subtract_credit(key, 1, tx())  # TigerBeetle alone changes: money wrong

    run = reconcile(stores)

    assert (run.checked, run.mismatched) == (1, 1)
    assert run.mismatches.get().kind == ReconciliationMismatch.Kind.BALANCE


def test_a_wallet_account_without_a_row_is_found_past_the_first_page(stores: Stores) -> None:
    mirrored_wallets(stores, 3)
    orphan_id = ledger_scope().ids.account_id(new_key())
    stores.tigerbeetle.backend.create_accounts(
        [Account(id=orphan_id, ledger=840, code=ledger_scope().codes.wallet)]
    )

    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run(page_size=2)

    assert (run.checked, run.matched, run.accounts_without_row) == (3, 3, 1)
    assert run.mismatches.get().tb_account_id_hex == u128_to_hex(orphan_id)
