"""A wallet's events keep its order in the feed while writers race on it and the collector
runs beside them (PostgreSQL; real commits, threads as concurrent requests)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from events.models import Event
from events.tasks import collect_events_now
from flags.models import Milestone
from flags.phases import Phase
from migration.phase_change import change_phase
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
    settings.EVENTS_STORE_SETTLE_S = 0.5  # the default's reason: rows commit out of order
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
    time.sleep(settings.EVENTS_STORE_SETTLE_S)
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
