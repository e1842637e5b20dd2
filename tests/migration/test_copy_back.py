"""The copy back from phase 4 (`migration.copy_back`): every write TigerBeetle took alone goes
into MongoDB once, in TigerBeetle's order, however often a run stops and starts again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from flags.phases import InvalidPhaseChange, Phase
from migration.copy_back import copy_back_tigerbeetle_writes
from registry.models import WalletHold, WalletTransfer
from tests.migration.conftest import Stores, assert_stores_agree, enter_phase, new_key, tx
from tests.migration.test_phase_change import backfill_done, move

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


def in_phase_4(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    move(stores, Phase.TIGERBEETLE_ONLY)


def logged(stores: Stores, transaction_id: str) -> int:
    return stores.mongo.database.log().count_documents({"_id": transaction_id})


@pytest.fixture
def mongo_admin(mongo_url: str) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    yield client
    client.admin.command("configureFailPoint", "failCommand", mode="off")
    client.close()


def test_a_step_back_stopped_part_way_keeps_what_it_copied_and_the_next_copies_the_rest_once(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = new_key()
    in_phase_4(stores)
    early, failing, late = tx(), tx(), tx()
    stores.phased.add_credit(key, 100, early)
    stores.phased.add_credit(key, 20, failing)
    stores.phased.add_credit(key, 50, late)
    # MongoDB fails the second copy's log entry (the first copy's went through).
    mongo_admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"skip": 1, "times": 1},
        data={"failCommands": ["insert"], "errorCode": 2},
    )

    with pytest.raises(InvalidPhaseChange, match=failing):
        move(stores, Phase.READ_CUTOVER)

    flagged = WalletTransfer.objects.filter(needs_copy_back=True)
    assert set(flagged.values_list("transaction_id", flat=True)) == {failing, late}
    assert logged(stores, early) == 1

    report = move(stores, Phase.READ_CUTOVER)

    assert report.copied_back == 2
    assert [logged(stores, tid) for tid in (early, failing, late)] == [1, 1, 1]
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
