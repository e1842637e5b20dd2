"""The migration's view of MongoDB answers in types, never in documents: the outbox's states
(the values every stored log entry holds), its depth, a wallet's next change, the parked
entries, the transactions a backfilled balance covers, and the legacy scan's snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from pymongo.errors import PyMongoError

from bench.legacy import LegacySeed
from domain import errors
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_database import LOG, MongoDatabase
from ledger.stores.mongo_documents import LogMarks
from migration.legacy_scan import LegacyScan
from migration.outbox import (
    LOG_MARKS,
    CoveredTransaction,
    MirrorState,
    NextEntry,
    OutboxDepth,
    ParkedEntry,
)
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx


def test_the_store_is_given_the_states_every_stored_log_entry_already_holds() -> None:
    stored = LogMarks(new_write="pending", copied_back="from_tigerbeetle", refused="none")
    assert stored == LOG_MARKS
    assert (MirrorState.MIRRORED, MirrorState.COVERED, MirrorState.PARKED) == (
        "mirrored",
        "covered",
        "parked",
    )
    assert MirrorState.AWAITING_BACKFILL == "awaiting_backfill"


def test_a_refused_debit_and_a_copied_back_write_are_logged_with_nothing_to_mirror(
    stores: Stores,
) -> None:
    key, refused, copied = new_key(), tx(), tx()
    stores.mongo.add_credit(key, 100, tx())
    with pytest.raises(errors.InsufficientFunds):
        stores.mongo.subtract_credit(key, 500, refused)
    stores.mongo.add_credit(key, 50, copied, mirror=False, created_at=datetime.now(UTC))

    states = {
        entry["_id"]: entry["mirror_state"]
        for entry in stores.mongo.database.log().find({"_id": {"$in": [refused, copied]}})
    }

    assert states == {refused: MirrorState.NONE, copied: MirrorState.FROM_TIGERBEETLE}
    assert stores.outbox.depth().pending == 1


def test_the_depth_counts_each_waiting_state_and_ages_the_oldest_pending_entry(
    stores: Stores,
) -> None:
    key = new_key()
    first, second, third = tx(), tx(), tx()
    for transaction_id in (first, second, third):
        stores.mongo.add_credit(key, 100, transaction_id)
    log = stores.mongo.database.log()
    log.update_one({"_id": first}, {"$set": {"created_at": datetime.now(UTC) - timedelta(hours=1)}})
    stores.outbox.mark([second], MirrorState.PARKED)
    stores.outbox.mark([third], MirrorState.AWAITING_BACKFILL)

    depth = stores.outbox.depth()

    assert (depth.pending, depth.parked, depth.awaiting_backfill) == (1, 1, 1)
    assert 3_590 <= depth.oldest_pending_age_s <= 3_700
    assert depth.waiting() == {"pending": 1, "parked": 1, "awaiting_backfill": 1}
    assert list(depth.waiting()) == ["pending", "parked", "awaiting_backfill"]


def test_an_empty_outbox_has_no_pending_age(stores: Stores) -> None:
    assert stores.outbox.depth() == OutboxDepth(
        pending=0, parked=0, awaiting_backfill=0, oldest_pending_age_s=0
    )


def test_a_wallets_next_change_carries_its_tigerbeetle_timestamp_once_mirrored(
    stores: Stores,
) -> None:
    key, first, second = new_key(), tx(), tx()
    stores.mongo.add_credit(key, 100, first)
    stores.mongo.add_credit(key, 200, second)

    waiting = stores.outbox.next_entry_after(key, 0)
    stores.mirror().drain()
    mirrored = stores.outbox.next_entry_after(key, 1)

    assert waiting == NextEntry(
        entry_id=first, wallet_seq=1, mirror_state=MirrorState.PENDING, tb_timestamp=None
    )
    assert mirrored is not None and mirrored.entry_id == second
    assert mirrored.mirror_state == MirrorState.MIRRORED
    assert isinstance(mirrored.tb_timestamp, int) and mirrored.tb_timestamp > 0
    assert stores.outbox.next_entry_after(key, 2) is None


def test_parked_entries_are_listed_for_support_oldest_first_with_their_reason(
    stores: Stores,
) -> None:
    key, older, newer = new_key(), tx(), tx()
    stores.mongo.add_credit(key, 100, older)
    stores.mongo.add_credit(key, 100, newer)
    stores.outbox.mark([newer, older], MirrorState.PARKED, mirror_error="TigerBeetle refused")
    out = StringIO()

    parked = stores.outbox.parked()
    call_command("mirror", stdout=out)

    assert [entry.entry_id for entry in parked] == [older, newer]
    assert parked[0] == ParkedEntry(
        entry_id=older,
        kind="credit",
        created_at=parked[0].created_at,
        mirror_error="TigerBeetle refused",
    )
    assert isinstance(parked[0].created_at, datetime)
    assert f"  parked {older}: TigerBeetle refused" in out.getvalue()


def test_the_pending_entries_of_named_wallets_come_wallet_by_wallet_in_seq_order_to_the_limit(
    stores: Stores,
) -> None:
    first, second, other = sorted([new_key(), new_key(), new_key()], key=lambda k: k.client_id)
    written: dict[WalletKey, list[str]] = {first: [], second: [], other: []}
    for _ in range(3):  # interleaved: the log's order is not a wallet's
        for key in (second, other, first):
            written[key].append(tx())
            stores.mongo.add_credit(key, 100, written[key][-1])

    named = stores.outbox.pending(10, keys=[second, first, second])
    limited = stores.outbox.pending(4, keys=[second, first])

    assert [entry.entry_id for entry in named] == written[first] + written[second]
    assert [entry.wallet_seq for entry in named] == [1, 2, 3, 1, 2, 3]
    assert [entry.entry_id for entry in limited] == written[first] + written[second][:1]


def test_the_pending_entries_of_many_named_wallets_are_read_in_one_query(
    stores: Stores,
) -> None:
    """One round trip per wallet would cost a second and more for a reconciliation's
    second look of fifty wallets on a MongoDB server busy with live traffic."""
    keys = [new_key() for _ in range(20)]
    for key in keys:
        stores.mongo.add_credit(key, 100, tx())
    db = stores.outbox.database.db

    def log_finds() -> int:
        return sum(
            1
            for entry in db["system.profile"].find()
            if entry.get("command", {}).get("find") == LOG
        )

    before = log_finds()
    db.command("profile", 2)
    try:
        pending = stores.outbox.pending(100, keys=keys)
    finally:
        db.command("profile", 0)

    assert len(pending) == len(keys)
    assert log_finds() - before == 1


def test_requeuing_the_parked_entries_of_named_wallets_leaves_the_others_parked(
    stores: Stores,
) -> None:
    named, also_named, other = new_key(), new_key(), new_key()
    entries = {key: tx() for key in (named, also_named, other)}
    for key, entry_id in entries.items():
        stores.mongo.add_credit(key, 100, entry_id)
    stores.outbox.mark(list(entries.values()), MirrorState.PARKED, mirror_error="refused")

    requeued = stores.outbox.requeue_parked([named, also_named])

    assert requeued == 2
    assert [entry.entry_id for entry in stores.outbox.parked()] == [entries[other]]


def test_the_parked_entries_of_named_wallets_are_listed_oldest_first_across_them(
    stores: Stores,
) -> None:
    one, another, other = new_key(), new_key(), new_key()
    order = [(one, tx()), (another, tx()), (other, tx()), (one, tx())]
    for key, entry_id in order:
        stores.mongo.add_credit(key, 100, entry_id)
    stores.outbox.mark([entry_id for _, entry_id in order], MirrorState.PARKED, mirror_error="x")

    listed = stores.outbox.parked(keys=[another, one])
    first_two = stores.outbox.parked(limit=2, keys=[another, one])

    wanted = [entry_id for key, entry_id in order if key in (one, another)]
    assert [entry.entry_id for entry in listed] == wanted
    assert [entry.entry_id for entry in first_two] == wanted[:2]


def test_a_malformed_parked_entry_is_still_listed(stores: Stores) -> None:
    stores.mongo.database.log().insert_one({"_id": "bare", "mirror_state": MirrorState.PARKED})

    assert stores.outbox.parked() == [
        ParkedEntry(entry_id="bare", kind="", created_at=None, mirror_error="")
    ]


def test_the_covered_transactions_are_read_typed_with_what_the_registry_keeps(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, covered = new_key(), tx()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.phased.subtract_credit(key, 300, covered, made_by="till-7")

    entries = stores.outbox.backfilled_entries({key: 1})

    (transaction,) = entries.transactions
    assert transaction == CoveredTransaction(
        key=key,
        transaction_id=covered,
        kind="debit",
        amount_minor=300,
        state="posted",
        created_at=transaction.created_at,
        made_by="till-7",
    )


def test_a_release_leaves_an_entry_mirrored_since_it_was_read_mirrored(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key, debit = new_key(), tx()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    stores.phased.subtract_credit(key, 300, debit)
    entries = stores.outbox.backfilled_entries({key: 0})
    assert entries.after == [debit]
    stores.outbox.mark([debit], MirrorState.MIRRORED)  # a mirror run sent it meanwhile

    stores.outbox.release(entries)

    assert stores.mongo.database.log().find_one({"_id": debit})["mirror_state"] == "mirrored"


def test_only_wallets_born_with_the_log_have_a_complete_log(stores: Stores) -> None:
    born, legacy, absent = new_key(), new_key(), new_key()
    stores.mongo.add_credit(born, 100, tx())
    legacy_wallet(stores, legacy, credit_minor=100, debit_minor=0)

    assert stores.outbox.complete_logs([born, legacy, absent]) == {born}
    assert stores.outbox.complete_logs([]) == set()


def test_the_legacy_scan_reads_every_wallet_as_a_snapshot_page_by_page(stores: Stores) -> None:
    born, legacy = new_key(), new_key()
    stores.mongo.add_credit(born, 100, tx())
    stores.mongo.add_credit(born, 50, tx())
    legacy_wallet(stores, legacy, credit_minor=700, debit_minor=200)

    pages = list(stores.scan.wallet_batches(1))
    snapshots = stores.scan.snapshots([born, legacy])

    assert [len(page) for page in pages] == [1, 1]
    assert {page[0].balance.key for page in pages} == {born, legacy}
    assert (snapshots[born].wallet_seq, snapshots[born].log_complete) == (2, True)
    assert snapshots[born].balance.fields_minor() == (150, 0, 150)
    assert (snapshots[legacy].wallet_seq, snapshots[legacy].log_complete) == (0, False)
    assert snapshots[legacy].balance.fields_minor() == (700, 200, 900)


def test_the_legacy_scan_may_take_longer_than_a_request_to_read_a_page(
    mongo_url: str, mongo_database_name: str
) -> None:
    """The embedded server answers a find's first batch once it has read every matching
    document (about 5 s for a million wallets): past a request's MONGO_TIMEOUT_S, the
    backfill failed on its first read at that scale."""
    seeding = MongoDatabase(mongo_url, name=mongo_database_name)
    LegacySeed(run="scan", mixed=True).seed(seeding, 20_000)
    hurried = MongoDatabase(mongo_url, name=mongo_database_name, timeout_s=0.05)
    with pytest.raises(PyMongoError):  # the premise: a request's timeout is too short
        next(iter(hurried.wallets().find({}, batch_size=1_000)))

    pages = list(LegacyScan(hurried).wallet_batches(5_000))

    assert [len(page) for page in pages] == [5_000] * 4


def test_the_outbox_depth_counts_hold_events_waiting_for_the_mirror(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 100, f"hold-{tx()}", timeout_s=3600)  # phase 0: both wait

    assert stores.outbox.depth().pending == 2


def test_hold_events_waiting_for_the_mirror_count_as_unmirrored_at_their_wallet_seq(
    stores: Stores,
) -> None:
    """A hold event is a log entry with a wallet_seq of its own (the one after the credit's)."""
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.place_hold(key, 100, f"hold-{tx()}", timeout_s=3600)  # phase 0: it waits

    assert stores.outbox.unmirrored_up_to(key, 1) == {MirrorState.PENDING: 1}
    assert stores.outbox.unmirrored_up_to(key, 2) == {MirrorState.PENDING: 2}
