"""A wallet's events keep its order in the feed while writers race on it and the collector
runs beside them (PostgreSQL; real commits, threads as concurrent requests)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from events.models import Event
from events.tasks import collect_events_now
from flags.models import Milestone
from flags.phases import Phase
from migration.phase_change import change_phase
from registry import transfers as transfer_registry
from tests.concurrency import run_concurrently
from tests.migration.conftest import Stores, enter_phase, new_key, tx

WRITES_PER_WALLET = 12
WALLETS = 3

pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


@pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY])
def test_order_per_wallet_holds_under_concurrent_writes(
    committed_stores: Stores, settings: Any, phase: Phase
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises them)")
    settings.EVENTS_STORE_SETTLE_S = 0  # the movement fence orders rows that commit out of order
    if phase == Phase.TIGERBEETLE_ONLY:
        enter_phase(Phase.READ_CUTOVER)
        Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
        change_phase(phase, "tester", committed_stores.mongo, committed_stores.batches)
    keys = [new_key() for _ in range(WALLETS)]
    writes = [(key, tx()) for key in keys for _ in range(WRITES_PER_WALLET)]
    done = threading.Event()

    def collector() -> None:
        try:
            while not done.is_set():
                collect_events_now(committed_stores.runtime)
        finally:
            connections.close_all()

    running = threading.Thread(target=collector)
    running.start()
    try:
        run_concurrently(
            lambda write: committed_stores.phased.add_credit(write[0], 100, write[1]),
            writes,
            workers=6,
        )
    finally:
        done.set()
        running.join()
    collect_events_now(committed_stores.runtime)

    for key in keys:
        feed = list(
            Event.objects.filter(client_id=key.client_id)
            .order_by("id")
            .values_list("historical_credit_minor", flat=True)
        )
        # Every credit raises the wallet's total received by 100: in the wallet's own order,
        # the feed reads 100, 200, 300, ...
        assert feed == [100 * n for n in range(1, WRITES_PER_WALLET + 1)], key


def test_a_write_whose_commit_lags_behind_a_later_one_still_comes_first(
    committed_stores: Stores, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TigerBeetle takes write A, then write B of the same wallet; B's rows commit while A's
    are still on their way. The collector waits for A (the movement fence), whatever the
    settle time, and the feed has A before B."""
    if connection.vendor != "postgresql":
        pytest.skip("the movement fence is PostgreSQL's (SQLite serialises writers)")
    settings.EVENTS_STORE_SETTLE_S = 0
    enter_phase(Phase.READ_CUTOVER)
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())
    change_phase(Phase.TIGERBEETLE_ONLY, "tester", committed_stores.mongo, committed_stores.batches)
    key, lagging, later = new_key(), tx(), tx()
    committed_stores.phased.add_credit(key, 100, tx())
    collect_events_now(committed_stores.runtime)
    sent_to_tigerbeetle, commit_may_go = threading.Event(), threading.Event()
    record_store_write = transfer_registry.record_store_write

    def record_late(**row: Any) -> Any:
        if row["transaction_id"] == lagging:
            sent_to_tigerbeetle.set()
            assert commit_may_go.wait(timeout=30)
        return record_store_write(**row)

    monkeypatch.setattr(transfer_registry, "record_store_write", record_late)

    def in_thread(call: Any) -> threading.Thread:
        def run() -> None:
            try:
                call()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    writer = in_thread(lambda: committed_stores.phased.add_credit(key, 100, lagging))
    assert sent_to_tigerbeetle.wait(timeout=30)
    committed_stores.phased.add_credit(key, 100, later)
    collector = in_thread(lambda: collect_events_now(committed_stores.runtime))
    collector.join(timeout=1.0)
    waited_for_the_lagging_write = collector.is_alive()
    commit_may_go.set()
    writer.join(timeout=30)
    collector.join(timeout=30)
    collect_events_now(committed_stores.runtime)

    assert waited_for_the_lagging_write
    feed = list(
        Event.objects.filter(client_id=key.client_id)
        .order_by("id")
        .values_list("reference_id", "historical_credit_minor")
    )
    assert [reference for reference, _ in feed[1:]] == [lagging, later]
    assert [total for _, total in feed] == [100, 200, 300]
