"""POST /api/batches in every migration phase, through the process's phased store: where a
batch's money lands (MongoDB, mirrored to TigerBeetle, or TigerBeetle alone), one admission
of the write lock (writes_paused refuses the whole batch), and a batch resent after the
primary store moved (phase 3 -> 4 and back) replaying its original answers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from domain.ids import WalletKey
from flags.audit import set_writes_paused
from flags.models import Milestone
from flags.phases import Phase
from migration.outbox import MirrorState
from migration.phase_change import change_phase
from migration.routing import MIRROR_TASKS_PER_BATCH_MAX
from registry.models import WalletTransfer
from tests.batches.test_batch_api import BATCH_PERMISSIONS, credit_item, debit_item
from tests.conftest import token_api_client
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


@pytest.fixture
def api(db: None) -> APIClient:
    return token_api_client(BATCH_PERMISSIONS)


def key_of(client_id: str) -> WalletKey:
    return WalletKey(client_id=client_id, country="USA", currency="USD", issuer=None)


def a_batch(client_id: str) -> list[dict[str, Any]]:
    return [
        credit_item(client_id, "10.00"),
        debit_item(client_id, "3.00"),
        debit_item(client_id, "30.00"),
        credit_item(client_id, "0.50"),
    ]


def post(api: APIClient, items: list[dict[str, Any]], *, atomic: bool = False) -> Any:
    return api.post("/api/batches", {"atomic": atomic, "items": items}, format="json")


def backfill_done() -> None:
    from django.utils import timezone

    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())


def test_in_phase_0_a_batch_lands_in_mongodb_only(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.LEGACY)
    client_id = f"client-{uuid.uuid4().hex[:10]}"

    response = post(api, a_batch(client_id))

    assert [r["status"] for r in response.json()["results"]] == [201, 201, 422, 201]
    assert stores.mongo.get_balance(key_of(client_id)).credit_minor == 750
    assert not WalletTransfer.objects.filter(wallet__client_id=client_id).exists()


@pytest.mark.parametrize("phase", [Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.READ_CUTOVER])
@pytest.mark.parametrize("atomic", [False, True])
def test_in_phases_1_to_3_a_batch_lands_in_mongodb_and_is_mirrored(
    stores: Stores, api: APIClient, phase: Phase, atomic: bool
) -> None:
    enter_phase(phase)
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [item for item in a_batch(client_id) if item["amount"] != "30.00"]

    response = post(api, items, atomic=atomic)

    assert response.status_code == (201 if atomic else 200)
    assert stores.mongo.get_balance(key_of(client_id)).credit_minor == 750
    assert stores.outbox.depth().pending == 0
    assert_stores_agree(stores, [key_of(client_id)])


def test_a_batch_over_many_wallets_is_mirrored_by_one_task(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.DUAL_WRITE)
    clients = [f"client-{uuid.uuid4().hex[:10]}" for _ in range(MIRROR_TASKS_PER_BATCH_MAX + 4)]

    post(api, [credit_item(client_id, "1.00") for client_id in clients])

    assert stores.outbox.depth().pending == 0
    assert_stores_agree(stores, [key_of(client_id) for client_id in clients])


@pytest.mark.parametrize("atomic", [False, True])
def test_in_phase_4_a_batch_lands_in_tigerbeetle_only_and_is_due_to_be_copied_back(
    stores: Stores, api: APIClient, atomic: bool
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [item for item in a_batch(client_id) if item["amount"] != "30.00"]

    response = post(api, items, atomic=atomic)

    assert [r["status"] for r in response.json()["results"]] == [201, 201, 201]
    assert stores.tigerbeetle.get_balance(key_of(client_id)).credit_minor == 750
    rows = WalletTransfer.objects.filter(wallet__client_id=client_id)
    assert sorted(row.needs_copy_back for row in rows) == [True, True, True]
    assert stores.mongo.database.log().count_documents({"client_id": client_id}) == 0


def test_a_refused_atomic_batch_in_phase_1_leaves_nothing_to_mirror(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    client_id = f"client-{uuid.uuid4().hex[:10]}"

    response = post(api, a_batch(client_id), atomic=True)

    assert (response.status_code, response.json()["error"]["details"]["item"]) == (422, 2)
    log = stores.mongo.database.log()
    assert log.count_documents({"client_id": client_id, "state": "posted"}) == 0
    assert log.count_documents({"mirror_state": MirrorState.PENDING}) == 0


@pytest.mark.parametrize("phase", list(Phase))
def test_a_batch_while_writes_are_paused_is_refused_whole(
    stores: Stores, api: APIClient, phase: Phase
) -> None:
    enter_phase(phase)
    set_writes_paused(True, actor="test")
    client_id = f"client-{uuid.uuid4().hex[:10]}"

    response = post(api, [credit_item(client_id, "1.00")])

    assert (response.status_code, response.json()["error"]["code"]) == (503, "writes_paused")
    assert stores.mongo.database.wallets().count_documents({"client_id": client_id}) == 0
    assert not WalletTransfer.objects.filter(wallet__client_id=client_id).exists()


def test_a_batch_resent_after_the_move_to_phase_4_and_back_replays_its_answers(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = a_batch(client_id)
    first = post(api, items).json()["results"]

    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    in_phase_4 = post(api, items).json()["results"]
    change_phase(Phase.READ_CUTOVER, "tester", stores.mongo, stores.batches)
    back = post(api, items).json()["results"]

    replayed = [
        {**result, "status": 200} if result["status"] == 201 else result for result in first
    ]
    for answers in (in_phase_4, back):
        assert [r["status"] for r in answers] == [r["status"] for r in replayed]
        assert [r.get("balance") for r in answers] == [r.get("balance") for r in replayed]
        assert [r.get("error", {}).get("code") for r in answers] == [
            r.get("error", {}).get("code") for r in replayed
        ]
    assert_stores_agree(stores, [key_of(client_id)])
