"""Holds in a wallet's balance history, the same contract on both stores: each hold event
(placed, captured, released, expired) is a point named by its hold id, with the balance
right after it, held included (`domain.history`)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.utils import timezone
from tigerbeetle import CreateTransferStatus

from domain import errors
from domain.history import HistoryPage, HistoryQuery, PointKind, PointRef
from domain.ids import WalletKey
from domain.wallets import WalletStore
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from ledger.tb_model import hold_resolution
from registry import holds as hold_registry
from registry.models import WalletHold
from tests.conftest import build_store

HOUR_S = 3600


def new_key() -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD", issuer=None
    )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def apart() -> None:
    """Stores keep whole milliseconds: events this far apart have distinct times."""
    time.sleep(0.003)


Row = tuple[str | None, str | None, str, int | None, tuple[int, int, int, int]]


def summary(page: HistoryPage) -> list[Row]:
    """(transaction id, hold id, kind, amount, (credit, held, debit, historical credit))."""
    return [
        (
            p.transaction_id,
            p.hold_id,
            p.kind.value,
            p.amount_minor,
            (
                p.balance.credit_minor,
                p.balance.held_minor,
                p.balance.debit_minor,
                p.balance.historical_credit_minor,
            ),
        )
        for p in page.points
    ]


def test_holds_their_capture_and_release_are_points_with_the_balance_and_held_after_each(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    credit, first, second = new_id("tx"), new_id("hold"), new_id("hold")
    wallet_store.add_credit(key, 1_000, credit)
    apart()
    wallet_store.place_hold(key, 300, first, timeout_s=HOUR_S)
    apart()
    wallet_store.place_hold(key, 200, second, timeout_s=HOUR_S)
    apart()
    wallet_store.capture_hold(first, amount_minor=250)
    apart()
    wallet_store.release_hold(second)

    page = wallet_store.history(HistoryQuery(key=key))

    assert summary(page) == [
        (None, second, "release", 200, (750, 0, 250, 1_000)),
        (None, first, "capture", 250, (550, 200, 250, 1_000)),
        (None, second, "hold", 200, (500, 500, 0, 1_000)),
        (None, first, "hold", 300, (700, 300, 0, 1_000)),
        (credit, None, "credit", 1_000, (1_000, 0, 0, 1_000)),
    ]
    assert not page.has_more


def test_an_expired_hold_is_a_point_at_its_expiry_with_its_money_back(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    credit, held, later = new_id("tx"), new_id("hold"), new_id("tx")
    wallet_store.add_credit(key, 1_000, credit)
    apart()
    placed = wallet_store.place_hold(key, 400, held, timeout_s=1)
    time.sleep(1.1)
    wallet_store.add_credit(key, 5, later)  # on MongoDB, this write marks the expiry

    page = wallet_store.history(HistoryQuery(key=key))

    assert summary(page) == [
        (later, None, "credit", 5, (1_005, 0, 0, 1_005)),
        (None, held, "expire", 400, (1_000, 0, 0, 1_000)),
        (None, held, "hold", 400, (600, 400, 0, 1_000)),
        (credit, None, "credit", 1_000, (1_000, 0, 0, 1_000)),
    ]
    assert page.points[1].created_at == placed.hold.expires_at


def test_two_holds_expiring_before_the_next_write_each_free_their_own_amount(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    first, second = new_id("hold"), new_id("hold")
    wallet_store.add_credit(key, 1_000, new_id("tx"))
    apart()
    wallet_store.place_hold(key, 100, first, timeout_s=1)
    apart()
    wallet_store.place_hold(key, 200, second, timeout_s=1)
    time.sleep(1.1)
    wallet_store.add_credit(key, 1, new_id("tx"))

    page = wallet_store.history(HistoryQuery(key=key, limit=3))

    assert [row[1:] for row in summary(page)] == [
        (None, "credit", 1, (1_001, 0, 0, 1_001)),
        (second, "expire", 200, (1_000, 0, 0, 1_000)),
        (first, "expire", 100, (800, 200, 0, 1_000)),
    ]


def test_a_cursor_pages_through_hold_events_one_point_at_a_time(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    first, second = new_id("hold"), new_id("hold")
    wallet_store.add_credit(key, 1_000, new_id("tx"))
    apart()
    wallet_store.place_hold(key, 300, first, timeout_s=HOUR_S)
    apart()
    wallet_store.place_hold(key, 200, second, timeout_s=HOUR_S)
    apart()
    wallet_store.capture_hold(first)
    apart()
    wallet_store.release_hold(second)
    whole = wallet_store.history(HistoryQuery(key=key)).points

    paged = []
    after: PointRef | None = None
    for _ in range(len(whole) + 1):
        page = wallet_store.history(HistoryQuery(key=key, limit=1, after=after))
        paged += page.points
        if not page.has_more:
            break
        after = page.points[-1].ref()

    assert paged == whole
    assert [p.kind for p in paged] == [
        PointKind.RELEASE,
        PointKind.CAPTURE,
        PointKind.HOLD,
        PointKind.HOLD,
        PointKind.CREDIT,
    ]


def test_a_cursor_naming_a_hold_event_that_never_happened_is_invalid(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    held = new_id("hold")
    wallet_store.add_credit(key, 1_000, new_id("tx"))
    wallet_store.place_hold(key, 300, held, timeout_s=HOUR_S)

    never_captured = PointRef(transaction_id=held, void=False, hold_event=PointKind.CAPTURE)
    with pytest.raises(errors.InvalidCursor):
        wallet_store.history(HistoryQuery(key=key, after=never_captured))


@pytest.fixture
def tigerbeetle_store(request: pytest.FixtureRequest, db: None) -> TigerBeetleWalletStore:
    store = build_store("tigerbeetle", request)
    assert isinstance(store, TigerBeetleWalletStore)
    return store


def test_on_tigerbeetle_a_hold_voided_for_its_expiry_before_its_timeout_is_one_expire_point(
    tigerbeetle_store: TigerBeetleWalletStore,
) -> None:
    """A hold MongoDB expired, voided by the mirror while its pending transfer's own timeout
    had not yet passed: the void is the expiry's point, never counted twice."""
    store, key, held = tigerbeetle_store, new_key(), new_id("hold")
    store.add_credit(key, 1_000, new_id("tx"))
    apart()
    store.place_hold(key, 400, held, timeout_s=HOUR_S)
    row = WalletHold.objects.get(hold_id=held)
    pending_id = int(row.tb_transfer_id_hex, 16)
    ids = store.scope.ids
    void = hold_resolution(pending_id, ids=ids, capture_minor=None)
    assert store.backend.create_transfers([void])[0].status == CreateTransferStatus.CREATED
    WalletHold.objects.filter(pk=row.pk).update(expires_at=timezone.now())  # MongoDB's expiry
    row.refresh_from_db()
    hold_registry.mark_expired(row)

    page = store.history(HistoryQuery(key=key))
    after_expiry = store.history(
        HistoryQuery(key=key, after=PointRef(held, void=False, hold_event=PointKind.EXPIRE))
    )

    assert [point[1:] for point in summary(page)][:2] == [
        (held, "expire", 400, (1_000, 0, 0, 1_000)),
        (held, "hold", 400, (600, 400, 0, 1_000)),
    ]
    assert len(page.points) == 3
    assert after_expiry.points == page.points[1:]


def test_on_mongodb_the_sweep_logs_an_expiry_no_write_marked(
    request: pytest.FixtureRequest,
) -> None:
    store = build_store("mongo", request)
    assert isinstance(store, MongoWalletStore)
    key, held = new_key(), new_id("hold")
    store.add_credit(key, 1_000, new_id("tx"))
    apart()
    placed = store.place_hold(key, 400, held, timeout_s=1)
    time.sleep(1.05)
    assert store.history(HistoryQuery(key=key)).points[0].kind == PointKind.HOLD

    store.sweep_expired_holds()

    newest = store.history(HistoryQuery(key=key)).points[0]
    assert (newest.hold_id, newest.kind, newest.created_at) == (
        held,
        PointKind.EXPIRE,
        placed.hold.expires_at,
    )
    assert (newest.balance.credit_minor, newest.balance.held_minor) == (1_000, 0)
