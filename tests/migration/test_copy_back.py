"""The copy back from phase 4 (`migration.copy_back`): every write TigerBeetle took alone goes
into MongoDB once, in TigerBeetle's order, however often a run stops and starts again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymongo
import pytest
from django.db import connection, connections, transaction

from domain.ids import WalletKey
from flags.phases import InvalidPhaseChange, Phase, current_state
from ledger.stores.mongo_documents import decimal128, key_filter
from migration import copy_back
from migration.copy_back import (
    COPY_BACK_LEFT_FOR_THE_PAUSE,
    copy_back_before_the_pause,
    copy_back_tigerbeetle_writes,
    events_due,
)
from registry.models import WalletAccount, WalletHold, WalletTransfer
from registry.movement_fence import fence_available
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase, new_key, tx
from tests.migration.test_phase_change import backfill_done, move

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


def in_phase_4(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    move(stores, Phase.TIGERBEETLE_ONLY)


def logged(stores: Stores, transaction_id: str) -> int:
    return stores.mongo.database.log().count_documents({"_id": transaction_id})


def fail_an_insert(mongo_admin: pymongo.MongoClient[dict[str, Any]], *, after: int) -> None:
    """MongoDB fails the next insert once `after` more have gone through."""
    mongo_admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"skip": after, "times": 1},
        data={"failCommands": ["insert"], "errorCode": 2},
    )


def test_a_step_back_stopped_part_way_keeps_the_batches_it_copied_and_the_next_copies_the_rest_once(
    stores: Stores,
    mongo_admin: pymongo.MongoClient[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(copy_back, "COPY_BACK_BATCH_EVENTS", 1)
    key = new_key()
    in_phase_4(stores)
    early, failing, late = tx(), tx(), tx()
    stores.phased.add_credit(key, 100, early)
    stores.phased.add_credit(key, 20, failing)
    stores.phased.add_credit(key, 50, late)
    # The first batch inserts the wallet (new in phase 4) and its entry; the second's fails.
    fail_an_insert(mongo_admin, after=2)

    with pytest.raises(InvalidPhaseChange, match=failing):
        move(stores, Phase.READ_CUTOVER)

    flagged = WalletTransfer.objects.filter(needs_copy_back=True)
    assert set(flagged.values_list("transaction_id", flat=True)) == {failing, late}
    assert logged(stores, early) == 1

    report = move(stores, Phase.READ_CUTOVER)

    assert report.copied_back == 2
    assert [logged(stores, tid) for tid in (early, failing, late)] == [1, 1, 1]
    assert_stores_agree(stores, [key])


def test_a_batch_that_fails_leaves_none_of_its_writes_and_the_next_step_back_copies_each_once(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = new_key()
    in_phase_4(stores)
    ids = [tx() for _ in range(3)]
    for transaction_id in ids:
        stores.phased.add_credit(key, 10, transaction_id)
    fail_an_insert(mongo_admin, after=1)  # the batch's entries, after its new wallet

    with pytest.raises(InvalidPhaseChange, match="TigerBeetle stays the only store"):
        move(stores, Phase.READ_CUTOVER)

    assert WalletTransfer.objects.filter(needs_copy_back=True).count() == 3
    assert [logged(stores, tid) for tid in ids] == [0, 0, 0]
    assert stores.mongo.database.wallets().count_documents({"client_id": key.client_id}) == 0

    report = move(stores, Phase.READ_CUTOVER)

    assert report.copied_back == 3
    assert [logged(stores, tid) for tid in ids] == [1, 1, 1]
    assert_stores_agree(stores, [key])


def test_many_wallets_credits_and_debits_go_back_in_batches_each_wallet_in_its_order(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy_back, "COPY_BACK_BATCH_EVENTS", 5)
    batches: list[int] = []
    copy_back_events = stores.mongo.copy_back_events

    def counted(writes: Any) -> int:
        batches.append(len(writes))
        return copy_back_events(writes)

    monkeypatch.setattr(stores.mongo, "copy_back_events", counted)
    keys = [new_key() for _ in range(3)]
    in_phase_4(stores)
    order: dict[WalletKey, list[str]] = {key: [] for key in keys}
    # Out of its wallet's order a debit would be refused for funds; the wallets interleave,
    # so every batch of five cuts some wallet's writes in two.
    for amount, write in ((100, "credit"), (100, "debit"), (40, "credit"), (30, "debit")):
        for key in keys:
            order[key].append(tx())
            if write == "credit":
                stores.phased.add_credit(key, amount, order[key][-1])
            else:
                stores.phased.subtract_credit(key, amount, order[key][-1])

    report = move(stores, Phase.READ_CUTOVER)

    assert report.copied_back == 12
    assert batches == [5, 5, 2]
    for key in keys:
        entries = stores.mongo.database.log().find(
            {"client_id": key.client_id}, sort=[("wallet_seq", 1)]
        )
        assert [entry["_id"] for entry in entries] == order[key]
    assert_stores_agree(stores, keys)


def phantom_hold(key: WalletKey, held_minor: int) -> dict[str, Any]:
    """An empty wallet's fields, `held_minor` held by a hold neither store has."""
    zero = decimal128(0, key.currency)
    return {
        "credit": zero,
        "debit": zero,
        "historical_credit": zero,
        "held": decimal128(held_minor, key.currency),
        "wallet_seq": 0,
    }


def test_a_debit_mongodb_would_refuse_fails_the_step_back_naming_it(stores: Stores) -> None:
    key, other = new_key(), new_key()
    in_phase_4(stores)
    stores.phased.add_credit(other, 10, tx())
    stores.phased.add_credit(key, 100, tx())
    debit = tx()
    stores.phased.subtract_credit(key, 100, debit)
    # MongoDB holds half the money for a hold TigerBeetle never had: a difference the copy
    # back must report, not write past.
    stores.mongo.database.wallets().insert_one({**key_filter(key), **phantom_hold(key, 50)})

    with pytest.raises(InvalidPhaseChange, match=debit):
        move(stores, Phase.READ_CUTOVER)

    assert logged(stores, debit) == 0
    assert WalletTransfer.objects.get(transaction_id=debit).needs_copy_back


def test_a_step_back_refused_on_a_difference_goes_through_once_the_wallet_is_repaired(
    stores: Stores,
) -> None:
    """A refused copy is a difference, not the debit's answer: MongoDB keeps no refusal of
    the id that would refuse it again after the repair."""
    key = new_key()
    in_phase_4(stores)
    stores.phased.add_credit(key, 100, tx())
    debit = tx()
    stores.phased.subtract_credit(key, 100, debit)
    wallets = stores.mongo.database.wallets()
    wallets.insert_one({**key_filter(key), **phantom_hold(key, 50)})
    with pytest.raises(InvalidPhaseChange, match=debit):
        move(stores, Phase.READ_CUTOVER)

    wallets.update_one(key_filter(key), {"$set": {"held": decimal128(0, key.currency)}})
    move(stores, Phase.READ_CUTOVER)

    assert logged(stores, debit) == 1
    assert_stores_agree(stores, [key])


def test_copies_whose_rows_were_not_marked_yet_are_copied_once(stores: Stores) -> None:
    """A run stopped after MongoDB committed its copies and before the registry marked their
    rows done (the marks follow a round's copies): the next run finds them all in MongoDB."""
    key = new_key()
    in_phase_4(stores)
    credit, debit, hold = tx(), tx(), f"hold-{tx()}"
    stores.phased.add_credit(key, 1_000, credit)
    stores.phased.subtract_credit(key, 300, debit)
    stores.phased.void_transaction(debit, voided_by="support", reason="refund")
    stores.phased.place_hold(key, 200, hold, timeout_s=3_600)
    stores.phased.capture_hold(hold, amount_minor=150)
    copy_back_tigerbeetle_writes(stores.mongo, stores.batches)
    WalletTransfer.objects.filter(transaction_id=credit).update(needs_copy_back=True)
    WalletTransfer.objects.filter(transaction_id=debit).update(
        needs_copy_back=True, void_needs_copy_back=True
    )
    WalletHold.objects.filter(hold_id=hold).update(place_needs_copy_back=True, needs_copy_back=True)
    log = stores.mongo.database.log()
    entries_before = log.count_documents({})

    copy_back_tigerbeetle_writes(stores.mongo, stores.batches)

    assert log.count_documents({}) == entries_before
    assert_stores_agree(stores, [key])


def needs_the_fence() -> None:
    if not fence_available():
        pytest.skip("SQLite has no movement fence: the step back's pause copies everything")


def copied_order(stores: Stores, ids: list[str]) -> list[str]:
    """The copies of `ids` as MongoDB took them (a void as `void <id>`)."""
    names = [
        f"void {entry['voided_transaction_id']}" if entry["kind"] == "void" else entry["_id"]
        for entry in stores.mongo.database.log().find().sort("$natural", 1)
    ]
    return [name for name in names if name.removeprefix("void ") in ids]


def test_a_pass_before_the_pause_copies_in_order_and_the_pause_copies_the_writes_after_it(
    stores: Stores,
) -> None:
    needs_the_fence()
    key = new_key()
    in_phase_4(stores)
    ids = [tx() for _ in range(6)]
    # Each step needs the one before it in MongoDB: out of order, a debit or a void of a
    # credit would be refused for funds.
    stores.phased.add_credit(key, 100, ids[0])
    stores.phased.subtract_credit(key, 100, ids[1])
    stores.phased.void_transaction(ids[1], voided_by="support", reason="refund")
    stores.phased.subtract_credit(key, 100, ids[2])

    copied = copy_back_before_the_pause(stores.mongo, stores.batches, left_for_the_pause=0)

    assert (copied, events_due()) == (4, 0)
    stores.phased.add_credit(key, 40, ids[3])  # phase 4 goes on taking writes
    stores.phased.void_transaction(ids[3], voided_by="support", reason="duplicate")
    stores.phased.add_credit(key, 60, ids[4])
    stores.phased.subtract_credit(key, 60, ids[5])

    report = move(stores, Phase.READ_CUTOVER)

    assert (report.copied_back, report.copied_back_before_pause) == (4, 0)
    assert copied_order(stores, ids) == [
        ids[0],
        ids[1],
        f"void {ids[1]}",
        ids[2],
        ids[3],
        f"void {ids[3]}",
        ids[4],
        ids[5],
    ]
    assert_stores_agree(stores, [key])


def test_a_step_back_copies_more_than_the_pauses_share_before_the_pause(stores: Stores) -> None:
    needs_the_fence()
    key = new_key()
    in_phase_4(stores)
    for _ in range(COPY_BACK_LEFT_FOR_THE_PAUSE + 5):
        stores.phased.add_credit(key, 10, tx())

    report = move(stores, Phase.READ_CUTOVER)

    assert report.copied_back == report.copied_back_before_pause == COPY_BACK_LEFT_FOR_THE_PAUSE + 5
    assert_stores_agree(stores, [key])


def test_a_step_back_stopped_in_a_pass_before_the_pause_leaves_writes_on_tigerbeetle_and_resumes(
    stores: Stores,
    mongo_admin: pymongo.MongoClient[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    needs_the_fence()
    monkeypatch.setattr(copy_back, "COPY_BACK_BATCH_EVENTS", 1)
    key = new_key()
    in_phase_4(stores)
    ids = [tx() for _ in range(COPY_BACK_LEFT_FOR_THE_PAUSE + 5)]
    for transaction_id in ids:
        stores.phased.add_credit(key, 10, transaction_id)
    fail_an_insert(mongo_admin, after=2)  # the first batch's wallet and entry go through

    with pytest.raises(InvalidPhaseChange, match=ids[1]):
        move(stores, Phase.READ_CUTOVER)

    state = current_state()
    assert (state.phase, state.writes_paused) == (Phase.TIGERBEETLE_ONLY, False)
    assert events_due() == len(ids) - 1
    report = move(stores, Phase.READ_CUTOVER)
    assert report.copied_back == len(ids) - 1
    assert copied_order(stores, ids) == ids
    assert_stores_agree(stores, [key])


def test_on_sqlite_nothing_is_copied_before_the_pause(stores: Stores) -> None:
    if fence_available():
        pytest.skip("PostgreSQL: the movement fence lets a pass copy before the pause")
    key = new_key()
    in_phase_4(stores)
    for _ in range(COPY_BACK_LEFT_FOR_THE_PAUSE + 5):
        stores.phased.add_credit(key, 10, tx())

    assert copy_back_before_the_pause(stores.mongo, stores.batches, left_for_the_pause=0) == 0

    report = move(stores, Phase.READ_CUTOVER)
    assert (report.copied_back, report.copied_back_before_pause) == (
        COPY_BACK_LEFT_FOR_THE_PAUSE + 5,
        0,
    )
    assert_stores_agree(stores, [key])


def test_a_pass_before_the_pause_waits_for_a_write_in_flight_tigerbeetle_took_first(
    committed_stores: Stores,
) -> None:
    """A write's registry row can commit after the row of a write TigerBeetle took later: a
    pass reading then would copy the later one first. It waits for the writes holding the
    movement fence, so it copies both, in TigerBeetle's order."""
    stores = committed_stores
    needs_the_fence()
    slow_key, quick_key = new_key(), new_key()
    in_phase_4(stores)
    stores.phased.add_credit(slow_key, 100, tx())
    stores.phased.add_credit(quick_key, 100, tx())
    copy_back_before_the_pause(stores.mongo, stores.batches, left_for_the_pause=0)
    slow, quick = tx(), tx()
    account_locked, release_account = threading.Event(), threading.Event()

    def hold_the_slow_wallets_row() -> None:
        # Its transfer row cannot commit (the deferred foreign key's check waits for this).
        with transaction.atomic():
            WalletAccount.objects.select_for_update().get(pk=wallet_pk(slow_key))
            account_locked.set()
            release_account.wait(timeout=60)

    holder = in_thread(hold_the_slow_wallets_row)
    try:
        assert account_locked.wait(timeout=10)
        writer = in_thread(lambda: stores.phased.add_credit(slow_key, 10, slow))
        wait_until_a_write_waits_for_a_lock()  # TigerBeetle took `slow`; its commit waits
        stores.phased.add_credit(quick_key, 10, quick)
        copier = in_thread(
            lambda: copy_back_before_the_pause(stores.mongo, stores.batches, left_for_the_pause=0)
        )
        copier.join(timeout=1)

        assert copier.is_alive()  # waiting for `slow` to commit
    finally:
        release_account.set()
    for thread in (holder, writer, copier):
        thread.join(timeout=60)
        assert not thread.is_alive()
    rows = WalletTransfer.objects.filter(transaction_id__in=[slow, quick])
    assert sorted(rows.values_list("tb_timestamp", "transaction_id"))[0][1] == slow
    assert events_due() == 0
    assert copied_order(stores, [slow, quick]) == [slow, quick]
    assert_stores_agree(stores, [slow_key, quick_key])


def wallet_pk(key: WalletKey) -> int:
    return WalletAccount.objects.get(
        client_id=key.client_id, country=key.country, currency=key.currency
    ).pk


def in_thread(work: Callable[[], object]) -> threading.Thread:
    """`work` on a thread of its own, as a request of another process would run it."""

    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until_a_write_waits_for_a_lock(timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("no write waited for the wallet's row")
