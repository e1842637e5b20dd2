"""Hold items of POST /api/batches in every migration phase, through the process's phased
store: placed, captured and released by MongoDB in phases 0-3 with every event in its log
(wallet_seq, balance_after), so the mirror carries batch-made holds into TigerBeetle in 1-3;
by TigerBeetle in phase 4; a batch hold of phase 1 captured by a batch after the move."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from domain.holds import HoldState
from domain.ids import WalletKey
from flags.phases import Phase
from migration.backfill import Backfill
from migration.phase_change import change_phase
from registry.models import WalletHold
from tests.batches.test_batch_api import BATCH_PERMISSIONS, credit_item, debit_item
from tests.batches.test_batch_holds_api import (
    HOLD_PERMISSIONS,
    capture_item,
    hold_item,
    release_item,
)
from tests.conftest import token_api_client
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase, legacy_wallet
from tests.migration.test_batch_phases import backfill_done, key_of, post

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


@pytest.fixture
def api(db: None) -> APIClient:
    return token_api_client((*BATCH_PERMISSIONS, *HOLD_PERMISSIONS))


def new_client() -> str:
    return f"client-{uuid.uuid4().hex[:10]}"


def hold_batch(client_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """A batch crediting a new wallet and placing three holds on it."""
    holds = [f"hold-{uuid.uuid4().hex}" for _ in range(3)]
    return [
        credit_item(client_id, "10.00"),
        hold_item(client_id, "2.00", holds[0]),
        hold_item(client_id, "3.00", holds[1]),
        hold_item(client_id, "1.00", holds[2]),
        debit_item(client_id, "1.00"),
    ], holds


def resolving_batch(client_id: str, holds: list[str]) -> list[dict[str, Any]]:
    return [
        capture_item(holds[0], "1.50"),
        release_item(holds[1]),
        debit_item(client_id, "6.00"),  # spends what the release and capture freed
    ]


def test_in_phase_0_batch_holds_are_mongodbs_and_each_event_is_a_point_of_its_log(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.LEGACY)
    client_id = new_client()
    items, holds = hold_batch(client_id)

    placed = post(api, items, atomic=True)
    resolved = post(api, resolving_batch(client_id, holds), atomic=False)

    assert placed.status_code == 201
    assert [r["status"] for r in resolved.json()["results"]] == [201, 201, 201]
    balance = stores.mongo.get_balance(key_of(client_id))
    assert (balance.credit_minor, balance.held_minor, balance.debit_minor) == (50, 100, 850)
    log = list(stores.mongo.database.log().find({"client_id": client_id}).sort([("wallet_seq", 1)]))
    assert [entry["wallet_seq"] for entry in log] == list(range(1, 9))
    assert [entry["kind"] for entry in log] == [
        "credit", "hold", "hold", "hold", "debit", "capture", "release", "debit",
    ]  # fmt: skip
    assert [entry["balance_after"]["held_minor"] for entry in log] == [
        0, 200, 500, 600, 600, 400, 100, 100,
    ]  # fmt: skip
    assert not WalletHold.objects.filter(hold_id__in=holds).exists()


@pytest.mark.parametrize("phase", [Phase.DUAL_WRITE, Phase.READ_CUTOVER])
@pytest.mark.parametrize("atomic", [False, True])
def test_in_phases_1_to_3_batch_holds_are_mirrored_into_tigerbeetle(
    stores: Stores, api: APIClient, phase: Phase, atomic: bool
) -> None:
    enter_phase(phase)
    client_id = new_client()
    items, holds = hold_batch(client_id)

    post(api, items, atomic=atomic)
    post(api, resolving_batch(client_id, holds), atomic=atomic)

    assert stores.outbox.depth().pending == 0
    assert_stores_agree(stores, [key_of(client_id)])
    assert stores.tigerbeetle.get_balance(key_of(client_id)).held_minor == 100
    rows = {row.hold_id: row for row in WalletHold.objects.filter(hold_id__in=holds)}
    assert [rows[hold].state for hold in holds] == [
        WalletHold.State.CAPTURED,
        WalletHold.State.RELEASED,
        WalletHold.State.OPEN,
    ]
    assert rows[holds[0]].captured_minor == 150


def test_in_phase_4_batch_holds_are_tigerbeetles(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    client_id = new_client()
    items, holds = hold_batch(client_id)

    post(api, items, atomic=True)
    results = post(api, resolving_batch(client_id, holds), atomic=True).json()["results"]

    assert [r["status"] for r in results] == [201, 201, 201]
    balance = stores.tigerbeetle.get_balance(key_of(client_id))
    assert (balance.credit_minor, balance.held_minor, balance.debit_minor) == (50, 100, 850)
    assert stores.mongo.database.holds().count_documents({"client_id": client_id}) == 0
    assert WalletHold.objects.get(hold_id=holds[0]).needs_copy_back


def test_a_batch_hold_of_phase_1_is_captured_by_a_batch_after_the_move_to_phase_4(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    client_id = new_client()
    items, holds = hold_batch(client_id)
    post(api, items, atomic=False)
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()

    change_phase(Phase.TIGERBEETLE_ONLY, "tester", stores.mongo, stores.batches)
    results = post(api, resolving_batch(client_id, holds), atomic=True).json()["results"]

    assert [r["status"] for r in results] == [201, 201, 201]
    assert [r["hold"]["state"] for r in results[:2]] == ["captured", "released"]
    balance = stores.tigerbeetle.get_balance(key_of(client_id))
    assert (balance.credit_minor, balance.held_minor, balance.debit_minor) == (50, 100, 850)
    assert stores.phased.get_hold(holds[0]).state == HoldState.CAPTURED
    # MongoDB still holds the phase-1 hold open: the capture is due to be copied back.
    assert stores.mongo.get_hold(holds[0]).state == HoldState.OPEN
    assert WalletHold.objects.get(hold_id=holds[0]).needs_copy_back


@pytest.mark.parametrize("atomic", [False, True])
def test_in_dual_write_a_batch_hold_on_a_legacy_wallet_awaiting_its_import_is_carried_by_it(
    stores: Stores, api: APIClient, atomic: bool
) -> None:
    """As a single placement is: MongoDB holds it at once, and the backfill's import (the
    wallet's snapshot taken after it) carries it onto TigerBeetle."""
    legacy = WalletKey(client_id=new_client(), country="USA", currency="USD", issuer=None)
    legacy_wallet(stores, legacy, credit_minor=1_000, debit_minor=0)
    enter_phase(Phase.READ_CUTOVER)
    client_id = new_client()
    items = [
        credit_item(client_id, "5.00"),
        hold_item(legacy.client_id, "1.00"),
        hold_item(client_id, "1.00"),
    ]

    response = post(api, items, atomic=atomic)
    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    stores.mirror().drain()

    assert response.status_code in (200, 201), response.json()
    assert [r["status"] for r in response.json()["results"]] == [201, 201, 201]
    assert report.failed == []
    assert stores.mongo.get_balance(legacy).held_minor == 100
    assert stores.tigerbeetle.get_balance(legacy) == stores.mongo.get_balance(legacy)
    assert_stores_agree(stores, [key_of(client_id)])
