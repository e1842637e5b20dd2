"""A wallet's balance history, the same contract on both stores (`domain.history`): MongoDB
answers from its transaction log, TigerBeetle from its account history and the registry."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import pytest

from domain import errors
from domain.history import HistoryPage, HistoryQuery, PointRef
from domain.ids import WalletKey
from domain.wallets import WalletStore


def new_key() -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency="USD", issuer=None
    )


def new_id() -> str:
    return f"tx-{uuid.uuid4().hex}"


def apart() -> None:
    """Stores keep whole milliseconds: writes this far apart have distinct times."""
    time.sleep(0.003)


def summary(page: HistoryPage) -> list[tuple[str | None, str, int | None, tuple[int, int, int]]]:
    return [
        (p.transaction_id, p.kind.value, p.amount_minor, p.balance.fields_minor())
        for p in page.points
    ]


def written(store: WalletStore, key: WalletKey, amounts: list[int]) -> list[str]:
    """Credits of `amounts`, oldest first, apart in time; their ids."""
    ids = []
    for amount in amounts:
        ids.append(new_id())
        store.add_credit(key, amount, ids[-1])
        apart()
    return ids


def test_each_point_is_a_transaction_with_the_balance_right_after_it_newest_first(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    credit_id, debit_id, second_id = new_id(), new_id(), new_id()
    wallet_store.add_credit(key, 1_000, credit_id)
    wallet_store.subtract_credit(key, 300, debit_id)
    wallet_store.add_credit(key, 50, second_id)

    page = wallet_store.history(HistoryQuery(key=key))

    assert summary(page) == [
        (second_id, "credit", 50, (750, 300, 1_050)),
        (debit_id, "debit", 300, (700, 300, 1_000)),
        (credit_id, "credit", 1_000, (1_000, 0, 1_000)),
    ]
    assert page.has_more is False


def test_a_void_is_a_point_of_its_own_and_the_voided_point_keeps_its_balance(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    credit_id, debit_id = new_id(), new_id()
    wallet_store.add_credit(key, 1_000, credit_id)
    wallet_store.subtract_credit(key, 400, debit_id)

    wallet_store.void_transaction(debit_id, voided_by="support-1", reason="duplicate")

    assert summary(wallet_store.history(HistoryQuery(key=key))) == [
        (debit_id, "void", 400, (1_000, 400, 1_400)),
        (debit_id, "debit", 400, (600, 400, 1_000)),
        (credit_id, "credit", 1_000, (1_000, 0, 1_000)),
    ]


def test_a_refused_debit_is_no_point(wallet_store: WalletStore) -> None:
    key = new_key()
    credit_id = new_id()
    wallet_store.add_credit(key, 100, credit_id)
    with pytest.raises(errors.InsufficientFunds):
        wallet_store.subtract_credit(key, 500, new_id())

    assert summary(wallet_store.history(HistoryQuery(key=key))) == [
        (credit_id, "credit", 100, (100, 0, 100))
    ]


def test_pages_follow_each_other_from_the_last_point_until_the_oldest(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    ids = written(wallet_store, key, [1, 2, 3, 4, 5])
    seen: list[str | None] = []
    after: PointRef | None = None
    pages = 0
    while True:
        page = wallet_store.history(HistoryQuery(key=key, limit=2, after=after))
        pages += 1
        seen += [point.transaction_id for point in page.points]
        if not page.has_more:
            break
        after = page.points[-1].ref()

    assert seen == list(reversed(ids))
    assert pages == 3


def test_a_page_that_ends_exactly_at_the_oldest_point_says_there_is_no_more(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    written(wallet_store, key, [1, 2])

    assert wallet_store.history(HistoryQuery(key=key, limit=2)).has_more is False


def test_from_is_inclusive_and_to_exclusive_on_the_transactions_times(
    wallet_store: WalletStore,
) -> None:
    key = new_key()
    ids = written(wallet_store, key, [1, 2, 3, 4])
    times: dict[str | None, datetime] = {
        p.transaction_id: p.created_at for p in wallet_store.history(HistoryQuery(key=key)).points
    }

    page = wallet_store.history(
        HistoryQuery(key=key, from_time=times[ids[1]], to_time=times[ids[3]])
    )

    assert [p.transaction_id for p in page.points] == [ids[2], ids[1]]


def test_a_cursor_pages_within_the_time_bounds(wallet_store: WalletStore) -> None:
    key = new_key()
    ids = written(wallet_store, key, [1, 2, 3, 4, 5])
    times = {
        p.transaction_id: p.created_at for p in wallet_store.history(HistoryQuery(key=key)).points
    }
    bounds = {"from_time": times[ids[1]], "to_time": times[ids[4]]}
    first = wallet_store.history(HistoryQuery(key=key, limit=2, **bounds))

    rest = wallet_store.history(
        HistoryQuery(key=key, limit=2, after=first.points[-1].ref(), **bounds)
    )

    assert [p.transaction_id for p in first.points] == [ids[3], ids[2]]
    assert first.has_more is True
    assert [p.transaction_id for p in rest.points] == [ids[1]]
    assert rest.has_more is False


def test_the_history_of_an_unknown_wallet_is_wallet_not_found(wallet_store: WalletStore) -> None:
    with pytest.raises(errors.WalletNotFound):
        wallet_store.history(HistoryQuery(key=new_key()))


def test_a_cursor_naming_another_wallets_transaction_is_invalid(
    wallet_store: WalletStore,
) -> None:
    key, other = new_key(), new_key()
    wallet_store.add_credit(key, 100, new_id())
    other_id = new_id()
    wallet_store.add_credit(other, 100, other_id)

    with pytest.raises(errors.InvalidCursor):
        wallet_store.history(
            HistoryQuery(key=key, after=PointRef(transaction_id=other_id, void=False))
        )


def test_a_cursor_naming_a_void_that_never_happened_is_invalid(wallet_store: WalletStore) -> None:
    key = new_key()
    credit_id = new_id()
    wallet_store.add_credit(key, 100, credit_id)

    with pytest.raises(errors.InvalidCursor):
        wallet_store.history(
            HistoryQuery(key=key, after=PointRef(transaction_id=credit_id, void=True))
        )


def test_refused_debits_between_points_take_no_place_on_a_page(wallet_store: WalletStore) -> None:
    key = new_key()
    ids = written(wallet_store, key, [1, 2])
    for _ in range(3):
        with pytest.raises(errors.InsufficientFunds):
            wallet_store.subtract_credit(key, 500, new_id())
    ids += written(wallet_store, key, [3, 4])

    first = wallet_store.history(HistoryQuery(key=key, limit=3))
    rest = wallet_store.history(HistoryQuery(key=key, limit=3, after=first.points[-1].ref()))

    assert [p.transaction_id for p in first.points] == [ids[3], ids[2], ids[1]]
    assert first.has_more is True
    assert [p.transaction_id for p in rest.points] == [ids[0]]
    assert rest.has_more is False
