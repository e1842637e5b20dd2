"""A step back from phase 4 to 3 copies TigerBeetle's phase-4 holds into MongoDB with their whole
history: placed, then captured, released or expired, each at its place among the wallet's
other copied-back writes, so MongoDB's balance history of the wallet is TigerBeetle's, point
for point (kind, amount, time, the balance after it, held included)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from domain.history import HistoryQuery
from flags.phases import Phase
from tests.api.test_hold_api import HOLD_PERMISSIONS
from tests.conftest import WALLET_API_PERMISSIONS, token_api_client
from tests.migration.conftest import Stores, new_key
from tests.migration.test_history_walk import hold_op, phase, url, walk_to_phase_4, write

pytestmark = pytest.mark.usefixtures(
    "criteria_not_awaited", "rollout_in_one_step", "steps_without_four_eyes"
)


def test_a_step_back_gives_mongodb_the_history_of_the_holds_tigerbeetle_took_alone(
    stores: Stores,
) -> None:
    api = token_api_client((*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS))
    key = new_key()
    write(api, key, "credits", "100.00")
    mirrored = "hold-mirrored-" + key.client_id
    hold_op(api, f"{url(key)}/holds", {"hold_id": mirrored, "amount": "3.00", "expires_in_s": 3600})
    walk_to_phase_4()

    captured, released, expired, still_open = (f"hold-{n}-{key.client_id}" for n in range(4))
    hold_op(
        api, f"{url(key)}/holds", {"hold_id": captured, "amount": "20.00", "expires_in_s": 3600}
    )
    write(api, key, "debits", "5.00")
    hold_op(api, f"/api/holds/{captured}/capture", {"amount": "12.00"})
    hold_op(api, f"{url(key)}/holds", {"hold_id": released, "amount": "7.00", "expires_in_s": 3600})
    write(api, key, "credits", "3.00")
    hold_op(api, f"/api/holds/{released}/release")
    hold_op(api, f"/api/holds/{mirrored}/release")
    hold_op(api, f"{url(key)}/holds", {"hold_id": expired, "amount": "2.00", "expires_in_s": 1})
    time.sleep(1.1)
    write(api, key, "credits", "0.10")
    hold_op(
        api, f"{url(key)}/holds", {"hold_id": still_open, "amount": "4.00", "expires_in_s": 3600}
    )
    query = HistoryQuery(key=key, limit=50)
    in_tigerbeetle = stores.tigerbeetle.history(query)
    assert [(p.kind.value, p.hold_id) for p in in_tigerbeetle.points[:11]] == [
        ("hold", still_open),
        ("credit", None),
        ("expire", expired),
        ("hold", expired),
        ("release", mirrored),
        ("release", released),
        ("credit", None),
        ("hold", released),
        ("capture", captured),
        ("debit", None),
        ("hold", captured),
    ]

    phase(Phase.READ_CUTOVER)  # back: TigerBeetle's phase-4 writes and holds are copied back

    assert stores.mongo.history(query) == in_tigerbeetle
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)


def test_a_hold_falling_due_between_two_writes_copied_back_expires_between_them(
    stores: Stores,
) -> None:
    """The copy back takes a wallet's credits and debits as one batch; a mirrored hold
    that expired between two of them expires between them in MongoDB too, as in
    TigerBeetle, not after both. (MongoDB's expiry is up to a second before the
    cluster's, which counts whole seconds, so the points' times are not compared.)"""
    api = token_api_client((*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS))
    key = new_key()
    write(api, key, "credits", "100.00")
    phase(Phase.DUAL_WRITE)
    phase(Phase.SHADOW_READ, shadow=100)
    phase(Phase.READ_CUTOVER, rollout=100)
    call_command("backfill", "--no-progress", stdout=StringIO())
    mirrored = "hold-due-" + key.client_id
    hold_op(api, f"{url(key)}/holds", {"hold_id": mirrored, "amount": "30.00", "expires_in_s": 3})
    phase(Phase.TIGERBEETLE_ONLY)
    write(api, key, "credits", "1.00")
    expires_at = stores.mongo.database.holds().find_one({"_id": mirrored})["expires_at"]
    assert stores.mongo.history(HistoryQuery(key=key, limit=1)).points[0].created_at < expires_at
    time.sleep((expires_at - datetime.now(UTC)).total_seconds() + 1.5)
    write(api, key, "debits", "50.00")
    query = HistoryQuery(key=key, limit=50)

    phase(Phase.READ_CUTOVER)

    def points(store: Any) -> list[tuple[str, str | None, int, int, int]]:
        return [
            (p.kind.value, p.hold_id, p.amount_minor, p.balance.credit_minor, p.balance.held_minor)
            for p in store.history(query).points
        ]

    assert points(stores.tigerbeetle)[:3] == [
        ("debit", None, 5_000, 5_100, 0),
        ("expire", mirrored, 3_000, 10_100, 0),
        ("credit", None, 100, 7_100, 3_000),
    ]
    assert points(stores.mongo) == points(stores.tigerbeetle)
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)
