"""Every money movement yields exactly one event, from whichever store is authoritative,
with the same id across a phase change, and collecting again changes nothing."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from domain import errors
from domain.batches import BatchItem, BatchItemKind
from events.models import Event
from events.tasks import COLLECTOR_RUN_LOCK, collect_events, collect_events_now
from flags.models import Milestone
from flags.phases import Phase
from flags.write_lock import one_run_at_a_time
from migration.phase_change import change_phase
from registry.models import StoreMovement
from tests.conftest import ledger_scope
from tests.migration.conftest import Stores, enter_phase, new_key, tx

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")
HOUR_S = 3600


def hold_id() -> str:
    return f"hold-{uuid.uuid4().hex}"


def collect(stores: Stores) -> dict[str, Any]:
    return collect_events_now(stores.runtime)


def events_of(reference_id: str) -> list[tuple[str, int]]:
    return list(
        Event.objects.filter(reference_id=reference_id)
        .order_by("id")
        .values_list("type", "amount_minor")
    )


def every_movement(stores: Stores) -> dict[str, str]:
    """One of each movement kind on one wallet through the phased store; the ids by name."""
    key = new_key()
    ids = {"credit": tx(), "debit": tx(), "refused": tx(), "captured": hold_id()}
    ids.update({"released": hold_id(), "expiring": hold_id()})
    stores.phased.add_credit(key, 1_000, ids["credit"], made_by="gateway")
    stores.phased.subtract_credit(key, 200, ids["debit"], made_by="checkout")
    with pytest.raises(errors.InsufficientFunds):
        stores.phased.subtract_credit(key, 5_000, ids["refused"], made_by="checkout")
    stores.phased.void_transaction(ids["debit"], voided_by="support", reason="duplicate")
    stores.phased.place_hold(key, 300, ids["captured"], timeout_s=HOUR_S, made_by="shop")
    stores.phased.capture_hold(ids["captured"], amount_minor=120, made_by="shop")
    stores.phased.place_hold(key, 50, ids["released"], timeout_s=HOUR_S, made_by="shop")
    stores.phased.release_hold(ids["released"], made_by="shop")
    stores.phased.place_hold(key, 70, ids["expiring"], timeout_s=1, made_by="shop")
    time.sleep(1.5)
    stores.phased.add_credit(key, 1, tx())  # MongoDB marks a due expiry at the next write
    ids["wallet"] = ledger_scope().ids.wallet_ref(key)
    return ids


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.DUAL_WRITE, Phase.TIGERBEETLE_ONLY])
def test_every_movement_kind_yields_exactly_one_event(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    ids = every_movement(stores)

    collect(stores)

    assert events_of(ids["credit"]) == [("posted", 1_000)]
    assert events_of(ids["debit"]) == [("posted", 200), ("voided", 200)]
    assert events_of(ids["refused"]) == [("refused", 5_000)]
    assert events_of(ids["captured"]) == [("held", 300), ("captured", 120)]
    assert events_of(ids["released"]) == [("held", 50), ("released", 50)]
    assert events_of(ids["expiring"]) == [("held", 70), ("expired", 70)]
    source = "tigerbeetle" if phase == Phase.TIGERBEETLE_ONLY else "mongodb"
    wallet_events = Event.objects.filter(wallet_ref=ids["wallet"])
    assert {event.source for event in wallet_events} == {source}
    assert wallet_events.count() == 11
    assert not StoreMovement.objects.exists()


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_an_event_carries_the_balance_after_the_actor_and_the_original_time(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    key = new_key()
    credit, debit = tx(), tx()
    before = timezone.now()
    stores.phased.add_credit(key, 1_000, credit, made_by="gateway")
    stores.phased.place_hold(key, 100, hold_id(), timeout_s=HOUR_S, made_by="shop")
    stores.phased.subtract_credit(key, 250, debit, made_by="checkout")
    time.sleep(0.05)

    collect(stores)

    event = Event.objects.get(reference_id=debit)
    assert (event.type, event.transaction_kind, event.actor) == ("posted", "debit", "checkout")
    assert (event.client_id, event.currency, event.amount_minor) == (key.client_id, "USD", 250)
    balance = (
        event.available_minor,
        event.held_minor,
        event.debit_minor,
        event.historical_credit_minor,
    )
    assert balance == (650, 100, 250, 1_000)
    assert before <= event.occurred_at < event.collected_at
    assert Event.objects.get(reference_id=credit).available_minor == 1_000


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_collecting_again_inserts_nothing(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    every_movement(stores)
    first = collect(stores)

    again = collect(stores)

    assert first["inserted"] == 11
    assert again == {"read": 0, "inserted": 0}


def test_a_collector_that_died_before_unmarking_mongodb_reads_the_batch_again_as_no_ops(
    stores: Stores,
) -> None:
    every_movement(stores)
    collect(stores)
    count = Event.objects.count()
    log = stores.mongo.database.log()
    log.update_many({}, {"$set": {"event_pending": True}})  # as if the unset never happened

    again = collect(stores)

    assert again["read"] == log.count_documents({}) and again["inserted"] == 0
    assert Event.objects.count() == count


def backfill_done() -> None:
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())


def move(stores: Stores, phase: Phase) -> None:
    change_phase(phase, "tester", stores.mongo, stores.batches)


def test_events_keep_their_ids_across_phase_1_to_4_and_back_to_3(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    phase1_credit, phase4_debit, phase3_debit = tx(), tx(), tx()
    stores.phased.add_credit(key, 1_000, phase1_credit)
    # Not collected before the step: MongoDB's log still holds it when phase 4 begins.
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    move(stores, Phase.TIGERBEETLE_ONLY)
    stores.phased.subtract_credit(key, 300, phase4_debit)
    stores.phased.void_transaction(phase4_debit, voided_by="support", reason="wrong")
    collect(stores)
    ids_in_4 = {(e.reference_id, e.type): e.event_id for e in Event.objects.all()}

    move(stores, Phase.READ_CUTOVER)  # copies phase 4's writes back into MongoDB's log
    stores.phased.subtract_credit(key, 100, phase3_debit)
    report = collect(stores)

    kinds = [
        (e.reference_id, e.type, e.source)
        for e in Event.objects.filter(client_id=key.client_id).order_by("id")
    ]
    assert kinds == [
        (phase1_credit, "posted", "mongodb"),
        (phase4_debit, "posted", "tigerbeetle"),
        (phase4_debit, "voided", "tigerbeetle"),
        (phase3_debit, "posted", "mongodb"),
    ]
    assert report["inserted"] == 1  # the copied-back entries were read, and were known
    assert report["read"] == 3  # the debit and its void copied back, and the new debit
    assert len(ids_in_4) == 3
    for (reference_id, event_type), event_id in ids_in_4.items():
        assert Event.objects.get(reference_id=reference_id, type=event_type).event_id == event_id


def test_a_movement_read_from_both_records_is_one_event(stores: Stores) -> None:
    """A phase-4 write copied back into MongoDB before the collector took its outbox row:
    both records name it, the feed holds it once."""
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    move(stores, Phase.TIGERBEETLE_ONLY)
    key = new_key()
    credit = tx()
    stores.phased.add_credit(key, 500, credit)
    move(stores, Phase.READ_CUTOVER)
    assert StoreMovement.objects.count() == 1
    assert stores.mongo.database.log().count_documents({"_id": credit, "event_pending": True})

    collect(stores)

    assert events_of(credit) == [("posted", 500)]
    assert Event.objects.get(reference_id=credit).source == "tigerbeetle"


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_a_batchs_writes_and_refusals_are_events_too(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    key = new_key()
    credit, debit, refused = tx(), tx(), tx()
    items = [
        BatchItem(kind=BatchItemKind.CREDIT, key=key, amount_minor=500, transaction_id=credit),
        BatchItem(kind=BatchItemKind.DEBIT, key=key, amount_minor=200, transaction_id=debit),
        BatchItem(kind=BatchItemKind.DEBIT, key=key, amount_minor=900, transaction_id=refused),
    ]
    stores.phased.post_batch(items, atomic=False, made_by="bulk")

    collect(stores)

    assert events_of(credit) == [("posted", 500)]
    assert events_of(debit) == [("posted", 200)]
    assert events_of(refused) == [("refused", 900)]
    assert Event.objects.get(reference_id=debit).available_minor == 300
    assert set(Event.objects.values_list("actor", flat=True)) == {"bulk"}


def test_a_resent_phase_4_batch_adds_no_event_and_no_outbox_row(stores: Stores) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    credit, held = tx(), hold_id()
    items = [
        BatchItem(kind=BatchItemKind.CREDIT, key=key, amount_minor=500, transaction_id=credit),
        BatchItem(
            kind=BatchItemKind.HOLD,
            key=key,
            amount_minor=300,
            transaction_id=held,
            timeout_s=HOUR_S,
        ),
    ]
    stores.phased.post_batch(items, atomic=False, made_by="bulk")
    collect(stores)

    stores.phased.post_batch(items, atomic=False, made_by="bulk")

    if connection.vendor == "postgresql":  # SQLite's path adds the rows again (the docstring)
        assert not StoreMovement.objects.filter(reference_id__in=[credit, held]).exists()
    collect(stores)
    assert events_of(credit) == [("posted", 500)]
    assert events_of(held) == [("held", 300)]


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_a_debit_refused_in_a_batch_comes_in_the_wallets_order(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    key = new_key()
    credit, debit, refused, later = tx(), tx(), tx(), tx()
    items = [
        BatchItem(kind=BatchItemKind.CREDIT, key=key, amount_minor=500, transaction_id=credit),
        BatchItem(kind=BatchItemKind.DEBIT, key=key, amount_minor=200, transaction_id=debit),
        BatchItem(kind=BatchItemKind.DEBIT, key=key, amount_minor=900, transaction_id=refused),
        BatchItem(kind=BatchItemKind.CREDIT, key=key, amount_minor=100, transaction_id=later),
    ]
    stores.phased.post_batch(items, atomic=False, made_by="bulk")

    collect(stores)

    feed = list(
        Event.objects.filter(client_id=key.client_id).order_by("id").values_list("reference_id")
    )
    assert [reference for (reference,) in feed] == [credit, debit, refused, later]


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_small_batches_keep_each_wallets_order(stores: Stores, settings: Any, phase: Phase) -> None:
    settings.EVENTS_COLLECT_BATCH = 2
    enter_phase(phase)
    keys = [new_key(), new_key(), new_key()]
    for round_number in range(4):
        for key in keys[round_number % 2 :]:
            stores.phased.add_credit(key, 100, tx())

    report = collect(stores)

    assert report["inserted"] == 10
    for key in keys:
        totals = list(
            Event.objects.filter(client_id=key.client_id)
            .order_by("id")
            .values_list("historical_credit_minor", flat=True)
        )
        assert totals == [100 * n for n in range(1, len(totals) + 1)]


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_a_batchs_hold_operations_are_events_too(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    captured, released, open_one = hold_id(), hold_id(), hold_id()
    stores.phased.post_batch(
        [
            BatchItem(
                kind=BatchItemKind.HOLD,
                key=key,
                amount_minor=amount,
                transaction_id=hold,
                timeout_s=HOUR_S,
            )
            for hold, amount in ((captured, 300), (released, 200), (open_one, 100))
        ],
        atomic=False,
        made_by="bulk",
    )
    stores.phased.post_batch(
        [
            BatchItem(
                kind=BatchItemKind.CAPTURE,
                key=None,
                amount_minor=0,
                transaction_id=captured,
                capture_amount="1.20",
            ),
            BatchItem(
                kind=BatchItemKind.RELEASE, key=None, amount_minor=0, transaction_id=released
            ),
        ],
        atomic=False,
        made_by="bulk",
    )

    collect(stores)

    assert events_of(captured) == [("held", 300), ("captured", 120)]
    assert events_of(released) == [("held", 200), ("released", 200)]
    assert events_of(open_one) == [("held", 100)]


def test_a_collector_run_that_finds_another_in_progress_does_nothing(stores: Stores) -> None:
    """Beat queues a run every interval; one that outlasts it must not be joined by the next
    (stacked runs re-read the same pending entries and re-send their updates)."""
    enter_phase(Phase.LEGACY)
    credit = tx()
    stores.phased.add_credit(new_key(), 100, credit)
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        try:
            with one_run_at_a_time(COLLECTOR_RUN_LOCK):
                held.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=other_run)
    holder.start()
    try:
        assert held.wait(30)
        skipped = collect_events()
    finally:
        release.set()
        holder.join(30)
    collected = collect_events()

    assert (skipped["inserted"], skipped["skipped"]) == (0, "another collector run is in progress")
    assert collected["inserted"] == 1
    assert events_of(credit) == [("posted", 100)]
