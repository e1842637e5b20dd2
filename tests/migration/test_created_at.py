"""A transaction's created_at is the time of its original write, whichever store answers
(the write's response and GET /api/transactions/{id}, in every phase, after the mirror, the
backfill and the copy-back)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from domain.ids import WalletKey
from flags.models import Milestone
from flags.phases import Phase
from migration.backfill import Backfill
from migration.phase_change import change_phase
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

# What a step does, not its gates (tests/migration/test_phase_gates.py).
pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


@pytest.fixture(autouse=True)
def _no_settle_wait(settings: Any) -> None:
    settings.PHASE_CHANGE_SETTLE_S = 0


def move(stores: Stores, phase: Phase) -> None:
    if phase == Phase.TIGERBEETLE_ONLY:
        from django.utils import timezone

        Milestone.objects.get_or_create(
            name=Milestone.BACKFILL_COMPLETED, defaults={"reached_at": timezone.now()}
        )
    change_phase(phase, "tester", stores.mongo, stores.batches)


def credit(api: APIClient, key: WalletKey, transaction_id: str, *, amount: str = "5.00") -> str:
    """The created_at the write answered."""
    url = f"/api/clients/{key.client_id}/wallets/{key.country}/{key.currency}/credits"
    response = api.post(url, {"transaction_id": transaction_id, "amount": amount}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["transaction"]["created_at"]


def read_created_at(api: APIClient, transaction_id: str) -> str:
    response = api.get(f"/api/transactions/{transaction_id}")
    assert response.status_code == 200, response.json()
    return response.json()["created_at"]


def test_the_mongodb_store_reads_back_the_created_at_its_write_answered(
    stores: Stores, api: APIClient
) -> None:
    transaction_id = tx()

    answered = credit(api, new_key(), transaction_id)

    assert read_created_at(api, transaction_id) == answered


def test_a_mirrored_write_keeps_its_mongodb_time_once_tigerbeetle_answers(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    transaction_id = tx()
    answered = credit(api, new_key(), transaction_id)
    time.sleep(0.01)  # the mirror and the registry work later than the write

    move(stores, Phase.TIGERBEETLE_ONLY)

    assert read_created_at(api, transaction_id) == answered


def test_a_phase_4_write_keeps_its_tigerbeetle_time_once_copied_back_to_mongodb(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    move(stores, Phase.TIGERBEETLE_ONLY)
    transaction_id = tx()
    answered = credit(api, new_key(), transaction_id)
    assert read_created_at(api, transaction_id) == answered
    time.sleep(0.01)  # the copy-back works later than the write

    move(stores, Phase.READ_CUTOVER)

    assert read_created_at(api, transaction_id) == answered


def test_a_transaction_older_than_the_backfill_keeps_its_time_in_tigerbeetle(
    stores: Stores, api: APIClient
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    transaction_id = tx()
    answered = credit(api, key, transaction_id)  # phase 0: covered by the snapshot
    enter_phase(Phase.READ_CUTOVER)
    time.sleep(0.01)

    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    move(stores, Phase.TIGERBEETLE_ONLY)

    assert read_created_at(api, transaction_id) == answered


def void(api: APIClient, transaction_id: str) -> str:
    """The voided_at the void answered."""
    response = api.post(
        f"/api/transactions/{transaction_id}/void", {"reason": "duplicate"}, format="json"
    )
    assert response.status_code in (200, 201), response.json()
    return response.json()["transaction"]["voided_at"]


def read_voided_at(api: APIClient, transaction_id: str) -> str:
    return api.get(f"/api/transactions/{transaction_id}").json()["voided_at"]


def test_a_void_keeps_its_time_across_the_stores_both_ways(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.READ_CUTOVER)
    mirrored, copied_back = tx(), tx()
    key = new_key()
    credit(api, key, mirrored)
    credit(api, key, copied_back)
    mirrored_voided_at = void(api, mirrored)  # MongoDB's, then mirrored
    move(stores, Phase.TIGERBEETLE_ONLY)
    copied_back_voided_at = void(api, copied_back)  # TigerBeetle's, then copied back
    assert read_voided_at(api, mirrored) == mirrored_voided_at
    time.sleep(0.01)

    move(stores, Phase.READ_CUTOVER)

    assert read_voided_at(api, copied_back) == copied_back_voided_at
    assert read_voided_at(api, mirrored) == mirrored_voided_at
