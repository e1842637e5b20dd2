"""The TigerBeetle store's balance history where the registry knows a void only by its state:
a transaction the backfill registered as voided already, whose void the mirror applied later
(`record_mirrored_void` leaves such a row as it is). The void transfer names the voided one
(user_data_128), so the point and a cursor at it are found all the same."""

from __future__ import annotations

import uuid

import pytest

from domain.history import HistoryQuery, PointKind, PointRef
from domain.ids import WalletKey
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from registry.models import WalletTransfer
from tests.conftest import build_store


@pytest.fixture
def store(request: pytest.FixtureRequest, db: None) -> TigerBeetleWalletStore:
    built = build_store("tigerbeetle", request)
    assert isinstance(built, TigerBeetleWalletStore)
    return built


def voided_without_its_void_id(store: TigerBeetleWalletStore) -> tuple[WalletKey, str, str]:
    key = WalletKey(client_id=f"c-{uuid.uuid4().hex[:10]}", country="USA", currency="USD")
    first, voided = f"tx-{uuid.uuid4().hex}", f"tx-{uuid.uuid4().hex}"
    store.add_credit(key, 1_000, first)
    store.subtract_credit(key, 200, voided)
    store.void_transaction(voided, voided_by="support-1", reason="test")
    WalletTransfer.objects.filter(transaction_id=voided).update(void_tb_transfer_id_hex="")
    return key, first, voided


def test_a_void_the_registry_knows_only_by_state_is_still_a_point(
    store: TigerBeetleWalletStore,
) -> None:
    key, first, voided = voided_without_its_void_id(store)

    points = store.history(HistoryQuery(key=key)).points

    assert [(p.transaction_id, p.kind, p.balance.credit_minor) for p in points] == [
        (voided, PointKind.VOID, 1_000),
        (voided, PointKind.DEBIT, 800),
        (first, PointKind.CREDIT, 1_000),
    ]


def test_a_cursor_at_such_a_void_pages_on_below_it(store: TigerBeetleWalletStore) -> None:
    key, first, voided = voided_without_its_void_id(store)

    page = store.history(
        HistoryQuery(key=key, after=PointRef(transaction_id=voided, void=True), limit=5)
    )

    assert [p.transaction_id for p in page.points] == [voided, first]
    assert page.points[0].kind == PointKind.DEBIT
