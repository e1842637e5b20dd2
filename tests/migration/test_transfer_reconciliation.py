"""The transfer registry is reconciled too (issue 21, item 8): every registered transfer (and
its void) is in TigerBeetle with its amount, every wallet transfer TigerBeetle holds is
registered; each kind of difference is recorded, and repaired from the admin by Support
where a repair exists, audited. Differences are built through the real seams: the ledger
backend and the registry's own writes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from domain.ids import WalletKey
from flags.phases import Phase
from ledger.batches import LedgerBatches
from ledger.tb_model import credit_transfer, void_transfer
from migration import transfer_check
from migration.backfill import Backfill
from migration.models import BlockerAction, ReconciliationMismatch, ReconciliationRun
from migration.reconciliation import Reconciliation
from registry import transfers as transfer_registry
from registry.models import WalletAccount, WalletTransfer
from tests.backoffice.conftest import client_for, user_in
from tests.conftest import ledger_scope
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

Kind = ReconciliationMismatch.Kind


@pytest.fixture(autouse=True)
def short_in_flight_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run waits IN_FLIGHT_S before reporting a transfer no row names; these tests build
    differences nobody is about to register, so they need not wait two seconds each."""
    monkeypatch.setattr(transfer_check, "IN_FLIGHT_S", 0.05)


def reconcile(stores: Stores, batches: LedgerBatches | None = None) -> ReconciliationRun:
    return Reconciliation(stores.scan, stores.outbox, batches or stores.batches).run()


def mirrored_wallet(stores: Stores) -> tuple[WalletKey, str, str]:
    """A wallet in dual write: a credit of 100.00 and a debit of 30.00, voided."""
    enter_phase(Phase.DUAL_WRITE)
    key, credit_id, debit_id = new_key(), tx(), tx()
    stores.phased.add_credit(key, 10_000, credit_id)
    stores.phased.subtract_credit(key, 3_000, debit_id)
    stores.phased.void_transaction(debit_id, voided_by="support", reason="duplicate")
    return key, credit_id, debit_id


def account_of(key: WalletKey) -> WalletAccount:
    return WalletAccount.objects.get(client_id=key.client_id)


def post_unregistered_credit(stores: Stores, key: WalletKey, transaction_id: str) -> None:
    """A credit TigerBeetle takes that nothing registers (a write outside every store)."""
    wallet = account_of(key)
    stores.tigerbeetle.backend.create_transfers(
        [
            credit_transfer(
                transaction_id,
                ids=ledger_scope().ids,
                tb_account_id=wallet.tb_account_id,
                ledger=wallet.ledger,
                amount_minor=250,
            )
        ]
    )


def register_credit(
    key: WalletKey, transaction_id: str, *, amount_minor: int, tb_timestamp: int | None
) -> None:
    """A credit's registry row, as the TigerBeetle store writes it after its post."""
    transfer_registry.record_store_write(
        transaction_id=transaction_id,
        wallet_pk=account_of(key).pk,
        kind="credit",
        amount_minor=amount_minor,
        tb_transfer_id=ledger_scope().ids.transaction_transfer_id(transaction_id),
        tb_timestamp=tb_timestamp,
        created_at=timezone.now(),
    )


def signed_in(role: str) -> tuple[Client, Any]:
    """A client signed in as a fresh user of the role, and the user."""
    user = user_in(role)
    return client_for(user), user


def case(kind: str) -> ReconciliationMismatch:
    return ReconciliationMismatch.objects.get(kind=kind)


def case_url(mismatch: ReconciliationMismatch) -> str:
    return f"/admin/migration/reconciliationmismatch/{mismatch.pk}/change/"


def repair(client: Client, mismatch: ReconciliationMismatch, **fields: str) -> str:
    url = f"/admin/migration/reconciliationmismatch/{mismatch.pk}/repair/"
    return client.post(url, fields, follow=True).content.decode()


# --- what agrees ---------------------------------------------------------------------------


def test_agreeing_registries_have_no_transfer_difference(stores: Stores) -> None:
    mirrored_wallet(stores)
    mirrored_wallet(stores)
    run = reconcile(stores)
    assert (run.transfer_differences, run.transfers_checked) == (0, 6)  # 2 x credit, debit, void
    assert (run.checked, run.matched) == (2, 2)


def test_transactions_a_backfilled_opening_balance_covers_are_not_looked_for(
    stores: Stores,
) -> None:
    key, covered = new_key(), tx()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.phased.add_credit(key, 500, covered)  # phase 0: logged, in the snapshot
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    enter_phase(Phase.DUAL_WRITE)
    stores.phased.void_transaction(covered, voided_by="support", reason="wrong wallet")
    assert WalletTransfer.objects.get(transaction_id=covered).tb_timestamp is None

    run = reconcile(stores)

    assert (run.transfer_differences, run.matched) == (0, 1)
    assert run.transfers_checked == 1  # the void, which TigerBeetle holds


def test_the_backfill_keeps_the_opening_pairs_amounts_so_they_are_not_looked_up(
    stores: Stores,
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=250)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    row = account_of(key)
    assert (row.opening_credits_minor, row.opening_debits_minor) == (1_250, 250)
    counting = CountingBatches(stores)

    assert reconcile(stores, counting).transfer_differences == 0

    assert counting.transfers_looked_up == 0 and counting.accounts_read == []


def test_a_wallet_imported_before_the_registry_kept_its_opening_amounts_is_explained_too(
    stores: Stores,
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=250)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    WalletAccount.objects.filter(pk=account_of(key).pk).update(
        opening_credits_minor=None, opening_debits_minor=None
    )
    counting = CountingBatches(stores)

    assert reconcile(stores, counting).transfer_differences == 0

    assert counting.transfers_looked_up == 2 and counting.accounts_read == []


class CountingBatches(LedgerBatches):
    """The jobs' batch port, counting each account whose transfers are read."""

    def __init__(self, stores: Stores) -> None:
        super().__init__(stores.tigerbeetle.backend, scope=ledger_scope())
        self.accounts_read: list[int] = []
        self.transfers_looked_up = 0

    def lookup_transfers(self, tb_transfer_ids: list[int]) -> Any:
        self.transfers_looked_up += len(tb_transfer_ids)
        return super().lookup_transfers(tb_transfer_ids)

    def get_account_transfers(self, account_filter: Any) -> Any:
        self.accounts_read.append(account_filter.account_id)
        return super().get_account_transfers(account_filter)


def test_only_accounts_the_registry_does_not_explain_are_read_transfer_by_transfer(
    stores: Stores,
) -> None:
    keys = [mirrored_wallet(stores)[0] for _ in range(3)]
    counting = CountingBatches(stores)
    assert reconcile(stores, counting).transfer_differences == 0
    assert counting.accounts_read == []

    post_unregistered_credit(stores, keys[1], tx())
    counting = CountingBatches(stores)
    assert reconcile(stores, counting).transfer_differences == 1
    assert counting.accounts_read == [account_of(keys[1]).tb_account_id]


class WritingDuringTheRun(CountingBatches):
    """The batch port of a run during which a client credits a wallet: right after the run
    has read the wallet's account, before it reads the registry's transfers."""

    def __init__(self, stores: Stores, key: WalletKey) -> None:
        super().__init__(stores)
        self.write = lambda: stores.phased.add_credit(key, 700, tx())

    def wallet_accounts_page(self, *, timestamp_min: int, limit: int) -> Any:
        if self.write is not None:  # the run's second pass: every account read already
            write, self.write = self.write, None
            write()
        return super().wallet_accounts_page(timestamp_min=timestamp_min, limit=limit)


def test_a_write_while_the_run_reads_is_neither_reported_nor_read_transfer_by_transfer(
    stores: Stores,
) -> None:
    key = mirrored_wallet(stores)[0]
    during = WritingDuringTheRun(stores, key)

    run = reconcile(stores, during)

    assert during.write is None  # it happened
    assert run.transfer_differences == 0
    assert during.accounts_read == []


def test_a_transfer_whose_row_commits_just_after_the_walk_looked_is_not_reported(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = mirrored_wallet(stores)[0]
    in_flight = tx()
    post_unregistered_credit(stores, key, in_flight)  # posted; its row is not in yet
    looked_up = transfer_check._registry_names
    registered: list[str] = []

    def row_commits_after_the_first_look(hexes: list[str]) -> dict[str, str]:
        names = looked_up(hexes)
        if not registered:
            registered.append(in_flight)
            register_credit(key, in_flight, amount_minor=250, tb_timestamp=None)
        return names

    monkeypatch.setattr(transfer_check, "_registry_names", row_commits_after_the_first_look)
    counting = CountingBatches(stores)

    run = reconcile(stores, counting)

    assert counting.accounts_read == [account_of(key).tb_account_id]  # unnamed when walked
    assert run.transfer_differences == 0


# --- a registered transfer TigerBeetle lacks: an error, no repair ---------------------------


def test_a_registered_transfer_tigerbeetle_lacks_is_an_error_without_a_repair(
    stores: Stores,
) -> None:
    support, _ = signed_in("Support")
    key, _, _ = mirrored_wallet(stores)
    ghost = tx()
    register_credit(key, ghost, amount_minor=500, tb_timestamp=1_000)

    run = reconcile(stores)

    assert run.transfer_differences == 1
    mismatch = case(Kind.TRANSFER_MISSING)
    assert (mismatch.transaction_id, mismatch.registered_amount_minor) == (ghost, 500)
    page = support.get(case_url(mismatch)).content.decode()
    assert 'class="errornote" id="case-missing"' in page
    assert "would invent it" in page
    assert 'id="repair-button"' not in page
    assert "cannot be repaired from the back-office" in repair(support, mismatch)
    assert not BlockerAction.objects.exists()


def test_a_registered_void_tigerbeetle_lacks_is_found(stores: Stores) -> None:
    _, credit_id, _ = mirrored_wallet(stores)
    row = WalletTransfer.objects.get(transaction_id=credit_id)
    transfer_registry.mark_voided(
        row,
        void_tb_transfer_id=ledger_scope().ids.void_transfer_id(row.tb_transfer_id),
        voided_by="someone",
        void_reason="never posted",
        voided_at=timezone.now(),
        needs_copy_back=False,
    )

    reconcile(stores)

    mismatch = case(Kind.TRANSFER_MISSING)
    assert mismatch.transaction_id == credit_id
    assert mismatch.tb_transfer_id_hex == row.void_tb_transfer_id_hex
    assert "void" in mismatch.detail


# --- an amount that differs: corrected to TigerBeetle's -------------------------------------


def test_a_registered_amount_that_differs_is_corrected_to_tigerbeetles_by_support(
    stores: Stores,
) -> None:
    support, support_user = signed_in("Support")
    _, credit_id, _ = mirrored_wallet(stores)
    row = WalletTransfer.objects.get(transaction_id=credit_id)
    transfer_registry.correct_amount(row, amount_minor=9_999)

    reconcile(stores)
    mismatch = case(Kind.TRANSFER_DIFFERS)
    assert (mismatch.registered_amount_minor, mismatch.tb_amount_minor) == (9_999, 10_000)
    assert (
        'value="Correct the registered amount"' in support.get(case_url(mismatch)).content.decode()
    )

    page = repair(support, mismatch)

    assert "from 9999 to 10000" in page
    row.refresh_from_db()
    assert row.amount_minor == 10_000
    mismatch.refresh_from_db()
    assert mismatch.resolved_by == f"{support_user.username} (repair)"
    action = BlockerAction.objects.get()
    assert (action.actor, action.action, action.mismatch) == (
        support_user.username,
        "correct_amount",
        mismatch,
    )
    history = LogEntry.objects.get(object_id=str(row.pk))
    assert "Repaired from TigerBeetle" in history.change_message
    assert reconcile(stores).transfer_differences == 0


# --- a transfer TigerBeetle holds that no row names: registered --------------------------


def test_a_credit_tigerbeetle_holds_unregistered_is_registered_under_its_transaction_id(
    stores: Stores,
) -> None:
    support, _ = signed_in("Support")
    key, _, _ = mirrored_wallet(stores)
    orphan = tx()
    post_unregistered_credit(stores, key, orphan)

    reconcile(stores)
    mismatch = case(Kind.NOT_REGISTERED)
    assert (mismatch.tb_amount_minor, mismatch.client_id) == (250, key.client_id)
    page = support.get(case_url(mismatch)).content.decode()
    assert 'id="id_transaction_id"' in page and "not found in the wallet's MongoDB log" in page

    refused = repair(support, mismatch, transaction_id="tx-someone-else")
    assert "does not derive the transfer" in refused
    assert not WalletTransfer.objects.filter(transaction_id="tx-someone-else").exists()

    done = repair(support, mismatch, transaction_id=orphan)

    assert f"Registered credit {orphan}" in done and "it will be copied back" in done
    row = WalletTransfer.objects.get(transaction_id=orphan)
    assert (row.kind, row.amount_minor, row.state, row.needs_copy_back) == (
        "credit",
        250,
        "posted",
        True,  # MongoDB lacks it
    )
    assert row.tb_timestamp is not None
    assert reconcile(stores).transfer_differences == 0


def test_a_lost_registry_row_is_registered_again_with_the_id_mongodbs_log_offers(
    stores: Stores,
) -> None:
    support, _ = signed_in("Support")
    _, credit_id, _ = mirrored_wallet(stores)
    made_by = WalletTransfer.objects.get(transaction_id=credit_id).made_by
    WalletTransfer.objects.filter(transaction_id=credit_id).delete()  # the row is lost

    reconcile(stores)
    mismatch = case(Kind.NOT_REGISTERED)
    page = support.get(case_url(mismatch)).content.decode()
    assert f'value="{credit_id}"' in page and "found in the wallet's MongoDB log" in page

    repair(support, mismatch, transaction_id=credit_id)

    row = WalletTransfer.objects.get(transaction_id=credit_id)
    assert (row.amount_minor, row.needs_copy_back, row.made_by) == (10_000, False, made_by)
    assert reconcile(stores).transfer_differences == 0


def test_a_void_whose_transaction_no_row_names_registers_the_transaction_as_voided(
    stores: Stores,
) -> None:
    support, _ = signed_in("Support")
    _, _, debit_id = mirrored_wallet(stores)
    WalletTransfer.objects.filter(transaction_id=debit_id).delete()

    reconcile(stores)
    cases = ReconciliationMismatch.objects.filter(kind=Kind.NOT_REGISTERED)
    assert cases.count() == 2  # the debit and its void
    void_case = next(c for c in cases if "void" in c.detail)

    repair(support, void_case, transaction_id=debit_id)

    row = WalletTransfer.objects.get(transaction_id=debit_id)
    assert (row.kind, row.state, row.amount_minor, row.voided_by) == (
        "debit",
        "voided",
        3_000,
        "support",  # MongoDB's record of who voided it
    )
    assert (row.needs_copy_back, row.void_needs_copy_back) == (False, False)
    assert reconcile(stores).transfer_differences == 0


# --- a void TigerBeetle holds of a transfer registered as posted: marked voided ------------


def test_a_void_tigerbeetle_holds_of_a_posted_transfer_is_marked_voided_by_support(
    stores: Stores,
) -> None:
    support, support_user = signed_in("Support")
    key, credit_id, _ = mirrored_wallet(stores)
    row = WalletTransfer.objects.get(transaction_id=credit_id)
    wallet = account_of(key)
    void = void_transfer(
        row.tb_transfer_id,
        ids=ledger_scope().ids,
        voided_credit=True,
        tb_account_id=wallet.tb_account_id,
        ledger=wallet.ledger,
        amount_minor=row.amount_minor,
        attempt=0,
    )
    stores.tigerbeetle.backend.create_transfers([void])

    reconcile(stores)
    mismatch = case(Kind.VOID_NOT_MARKED)
    assert mismatch.transaction_id == credit_id

    page = repair(support, mismatch)

    assert f"Marked {credit_id} voided" in page
    row.refresh_from_db()
    assert (row.state, row.voided_by, row.void_needs_copy_back) == (
        "voided",
        support_user.username,
        True,  # MongoDB has it posted: the void is copied back
    )
    assert row.void_tb_transfer_id_hex == mismatch.tb_transfer_id_hex
    assert BlockerAction.objects.get().action == "mark_voided"
    assert reconcile(stores).transfer_differences == 0


# --- who may repair ------------------------------------------------------------------------


def test_only_support_repairs_the_transfer_registry(stores: Stores) -> None:
    product, _ = signed_in("Product")
    key, _, _ = mirrored_wallet(stores)
    post_unregistered_credit(stores, key, tx())
    reconcile(stores)
    mismatch = case(Kind.NOT_REGISTERED)

    page = product.get(case_url(mismatch)).content.decode()
    assert 'id="repair-button"' not in page and "Support can repair it" in page
    url = f"/admin/migration/reconciliationmismatch/{mismatch.pk}/repair/"
    assert product.post(url, {"transaction_id": "x"}).status_code == 403
    nobody = client_for(user_in(None))
    assert nobody.post(url, {"transaction_id": "x"}).status_code in (302, 403)
    assert not BlockerAction.objects.exists()


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_the_transfer_registry_is_reconciled_in_every_phase(stores: Stores, phase: Phase) -> None:
    key, _, _ = mirrored_wallet(stores)
    post_unregistered_credit(stores, key, tx())
    enter_phase(phase)
    assert reconcile(stores).transfer_differences == 1
