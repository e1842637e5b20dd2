"""A void of a transaction a legacy wallet's opening balance covers, made while the backfill
imports the wallet (issue 25: the moonshot's "second void"). The backfill reads the wallet's
snapshot, then registers the transactions it covers from their log entries; a void landing
between the two is after the snapshot (the mirror posts it) while the entry it reads already
says voided. TigerBeetle holds one void either way; the registry must name it."""

from __future__ import annotations

from typing import Any

import pytest

from domain.ids import u128_to_hex
from flags.phases import Phase
from migration.backfill import Backfill
from migration.models import ReconciliationMismatch
from migration.reconciliation import Reconciliation
from registry import accounts as account_registry
from registry.models import WalletTransfer
from tests.conftest import ledger_scope
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx


def test_a_void_between_the_snapshot_and_the_import_leaves_one_registered_void(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, credit_id = new_key(), tx()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.phased.add_credit(key, 500, credit_id)  # phase 0: logged, in the snapshot
    enter_phase(Phase.DUAL_WRITE)
    record_imported = account_registry.record_imported

    def voided_meanwhile(*args: Any, **kwargs: Any) -> Any:
        """The void lands after the backfill read the wallet, before it registered it."""
        stores.phased.void_transaction(credit_id, voided_by="support", reason="wrong wallet")
        return record_imported(*args, **kwargs)

    monkeypatch.setattr(account_registry, "record_imported", voided_meanwhile)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    monkeypatch.undo()
    stores.mirror().drain()

    row = WalletTransfer.objects.get(transaction_id=credit_id)
    ids = ledger_scope().ids
    void_id = ids.void_transfer_id(ids.transaction_transfer_id(credit_id), attempt=0)
    assert stores.tigerbeetle.backend.lookup_transfers([void_id])  # the mirror posted it
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run()
    assert list(ReconciliationMismatch.objects.filter(run=run).values_list("kind", "detail")) == []
    assert (row.state, row.void_tb_transfer_id_hex) == ("voided", u128_to_hex(void_id))
