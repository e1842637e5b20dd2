"""Transfers TigerBeetle already holds keep working after credit and debit ids came to share
one transfer-id derivation (debits used to have their own)."""

from __future__ import annotations

from domain.ids import ID_SCHEME_VERSION, _namespaced_hash_bits, u128_to_hex
from domain.money import ledger_for_currency
from flags.phases import Phase
from ledger import history
from ledger.tb_model import TRANSFER_CODE_VOID, debit_transfer
from migration.outbox import MirrorState
from registry.models import WalletAccount, WalletTransfer
from tests.conftest import ledger_scope
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase, new_key, tx


def legacy_debit_transfer_id(reference_id: str) -> int:
    """A debit's transfer id before the shared namespace."""
    namespace = ledger_scope().ids.namespace
    return _namespaced_hash_bits(["debit", ID_SCHEME_VERSION, reference_id], 128, namespace)


def test_a_debit_mirrored_under_its_old_transfer_id_is_voided_against_that_transfer(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    reference_id = tx()
    stores.mongo.subtract_credit(key, 300, reference_id)
    # As an earlier version mirrored it: its own transfer id, registered as such.
    account = WalletAccount.objects.get(client_id=key.client_id)
    old_debit = debit_transfer(
        reference_id,
        ids=ledger_scope().ids,
        tb_account_id=account.tb_account_id,
        ledger=account.ledger,
        amount_minor=300,
    )
    old_debit.id = legacy_debit_transfer_id(reference_id)
    assert stores.tigerbeetle.backend.create_transfers([old_debit])[0].timestamp
    WalletTransfer.objects.create(
        transaction_id=reference_id,
        wallet=account,
        kind="debit",
        amount_minor=300,
        tb_transfer_id_hex=u128_to_hex(old_debit.id),
    )
    stores.mongo.database.log().update_one(
        {"_id": reference_id}, {"$set": {"mirror_state": MirrorState.MIRRORED}}
    )

    stores.phased.void_transaction(reference_id, voided_by="support", reason="duplicate")

    voids = [
        transfer
        for transfer in history.recent_transfers(stores.tigerbeetle.backend, key)
        if transfer.code == TRANSFER_CODE_VOID
    ]
    assert [void.user_data_128 for void in voids] == [old_debit.id]
    assert voids[0].ledger == ledger_for_currency(key.currency)
    assert_stores_agree(stores, [key])
