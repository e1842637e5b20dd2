"""MongoDB's expired holds are released by the beat sweep in wallets no write touches (a write,
and a read, count them out at once: tests/stores/test_hold_behaviour.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ledger.stores.mongo_documents import key_filter
from migration import tasks
from tests.migration.conftest import Stores, new_key, tx


def test_the_sweep_releases_expired_holds_of_an_untouched_wallet(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    expiring, lasting = f"hold-{uuid.uuid4().hex}", f"hold-{uuid.uuid4().hex}"
    stores.phased.place_hold(key, 300, expiring, timeout_s=1)
    stores.phased.place_hold(key, 200, lasting, timeout_s=3600)
    time.sleep(1.5)

    outcome = tasks.sweep_expired_holds.delay().get()

    database = stores.mongo.database
    wallet = database.wallets().find_one(key_filter(key))
    assert wallet is not None
    assert outcome == {"wallets": 1}
    assert wallet["held"].to_decimal() * 100 == 200
    assert database.holds().find_one({"_id": expiring})["state"] == "expired"  # type: ignore[index]  # found
    assert stores.mongo.get_balance(key).fields_minor() == (800, 0, 1_000)


def test_the_hold_sweep_is_on_the_beat_schedule(settings: Any) -> None:
    schedule = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }

    assert schedule["ledger.sweep_expired_holds"] == settings.HOLD_SWEEP_INTERVAL_S
