"""A client id shaped like the MongoDB log's old void key (`void:<id>`) travels the migration
as an ordinary id: mirrored in dual write, copied back after phase 4, never taken for a
void."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from flags.models import Milestone
from flags.phases import Phase
from migration.outbox import MirrorState
from migration.phase_change import change_phase
from registry.models import WalletTransfer
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase, new_key, tx

# What a step does, not its gates (tests/migration/test_phase_gates.py).
pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


@pytest.fixture(autouse=True)
def _no_settle_wait(settings: Any) -> None:
    settings.PHASE_CHANGE_SETTLE_S = 0


def test_dual_write_mirrors_a_void_and_a_credit_named_like_its_old_key(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    original = tx()
    stores.phased.add_credit(key, 1_000, original)
    stores.phased.add_credit(key, 300, f"void:{original}")

    stores.phased.void_transaction(original, voided_by="support", reason="refund")

    log = stores.mongo.database.log()
    states = [e["mirror_state"] for e in log.find({"client_id": key.client_id})]
    assert states == [MirrorState.MIRRORED] * 3
    assert WalletTransfer.objects.get(transaction_id=original).state == "voided"
    assert WalletTransfer.objects.get(transaction_id=f"void:{original}").state == "posted"
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (300, 1_000, 1_300)
    assert_stores_agree(stores, [key])


def test_stepping_back_from_phase_4_copies_a_lookalike_credit_and_a_void_apart(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    key = new_key()
    original = tx()
    stores.phased.add_credit(key, 1_000, original)
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    stores.phased.void_transaction(original, voided_by="support", reason="refund")
    stores.phased.add_credit(key, 200, f"void:{original}")

    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)

    assert stores.mongo.get_transaction(original).state == "voided"
    assert stores.mongo.get_transaction(f"void:{original}").amount_minor == 200
    assert stores.mongo.get_balance(key).fields_minor() == (200, 1_000, 1_200)
    assert_stores_agree(stores, [key])
