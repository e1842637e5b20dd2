"""The step back's copy back takes a wallet's voids and hold events in the same MongoDB
batches as its credits and debits (`ledger.stores.mongo_copy_back`), and leaves exactly what
copying each event alone leaves: the same log entries, holds and wallet, point for point."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from bson import ObjectId

from domain.history import HistoryQuery
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_copy_back import CopiedEvent, NotOneBatch
from ledger.stores.mongo_documents import key_filter
from ledger.stores.mongo_store import MongoWalletStore
from tests.api.test_hold_api import HOLD_PERMISSIONS
from tests.conftest import WALLET_API_PERMISSIONS, token_api_client
from tests.migration.conftest import Stores, new_key
from tests.migration.test_history_walk import hold_op, phase, url, void, walk_to_phase_4, write

pytestmark = pytest.mark.usefixtures(
    "criteria_not_awaited", "rollout_in_one_step", "steps_without_four_eyes"
)

# What differs between two walks of the same events: their times (every datetime is compared
# only by being there; TigerBeetle's timestamp of a mirrored entry is left out), the client and
# the ObjectIds of the void and hold event entries (the walks' ids are compared by the name each
# walk gave them).
VARYING_FIELDS = frozenset({"client_id", "tb_timestamp"})
A_TIME = "a time"


def history_before_phase_4(api: Any, key: WalletKey) -> dict[str, str]:
    """A credit, a debit and a hold on the wallet in phase 0 (the mirror carries them);
    their ids by name."""
    names = {
        write(api, key, "credits", "100.00"): "opening",
        write(api, key, "debits", "10.00"): "old debit",
    }
    mirrored = f"hold-mirrored-{key.client_id}"
    hold_op(api, f"{url(key)}/holds", {"hold_id": mirrored, "amount": "3.00", "expires_in_s": 3600})
    names[mirrored] = "mirrored"
    return names


def tigerbeetle_alone(api: Any, key: WalletKey, names: dict[str, str]) -> None:
    """Phase 4's events on the wallet: every kind the copy back copies, interleaved."""
    captured, released, still_open = (f"hold-{n}-{key.client_id}" for n in range(3))
    names.update({captured: "captured", released: "released", still_open: "open"})
    hold_op(
        api, f"{url(key)}/holds", {"hold_id": captured, "amount": "20.00", "expires_in_s": 3600}
    )
    names[write(api, key, "debits", "5.00")] = "debit"
    hold_op(api, f"/api/holds/{captured}/capture", {"amount": "12.00"})
    hold_op(api, f"{url(key)}/holds", {"hold_id": released, "amount": "7.00", "expires_in_s": 3600})
    credit = write(api, key, "credits", "3.00")
    names[credit] = "credit"
    hold_op(api, f"/api/holds/{released}/release")
    hold_op(api, f"/api/holds/hold-mirrored-{key.client_id}/release")
    void(api, credit)
    void(api, next(tid for tid, name in names.items() if name == "old debit"))
    hold_op(
        api, f"{url(key)}/holds", {"hold_id": still_open, "amount": "4.00", "expires_in_s": 3600}
    )
    names[write(api, key, "credits", "0.10")] = "last credit"


def named(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            field: named(inner, names)
            for field, inner in value.items()
            if field not in VARYING_FIELDS and not isinstance(inner, ObjectId)
        }
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, datetime):
        return A_TIME
    return value


def mongo_documents(stores: Stores, key: WalletKey, names: dict[str, str]) -> dict[str, Any]:
    """The wallet's log (in its order), holds and wallet document as MongoDB holds them."""
    database = stores.mongo.database
    log = database.log().find({"client_id": key.client_id}, sort=[("wallet_seq", 1)])
    holds = database.holds().find({"client_id": key.client_id})
    return {
        "log": [named(entry, names) for entry in log],
        "holds": sorted((named(hold, names) for hold in holds), key=lambda hold: hold["_id"]),
        "wallet": named(database.wallets().find_one(key_filter(key)), names),
    }


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Each batch the copy back sent: its size, and why MongoDB's store refused it ("")."""
    sent: list[tuple[int, str]] = []
    copy_back_events = MongoWalletStore.copy_back_events

    def counted(store: MongoWalletStore, events: Sequence[CopiedEvent]) -> int:
        try:
            copied = copy_back_events(store, events)
        except NotOneBatch as refusal:
            sent.append((len(events), str(refusal)))
            raise
        sent.append((len(events), ""))
        return copied

    monkeypatch.setattr(MongoWalletStore, "copy_back_events", counted)
    return sent


def test_a_wallets_voids_and_hold_events_go_back_in_one_batch_with_its_writes(
    stores: Stores, batches: list[tuple[int, str]]
) -> None:
    api = token_api_client((*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS))
    key = new_key()
    names = history_before_phase_4(api, key)
    walk_to_phase_4()
    tigerbeetle_alone(api, key, names)
    query = HistoryQuery(key=key, limit=50)
    in_tigerbeetle = stores.tigerbeetle.history(query)

    phase(Phase.READ_CUTOVER)

    assert batches == [(11, "")]
    assert stores.mongo.history(query) == in_tigerbeetle
    assert stores.mongo.get_balance(key) == stores.tigerbeetle.get_balance(key)


def test_a_batch_leaves_in_mongodb_exactly_what_copying_each_event_alone_leaves(
    stores: Stores, batches: list[tuple[int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = token_api_client((*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS))
    in_batches, one_by_one = new_key(), new_key()
    names_in_batches = history_before_phase_4(api, in_batches)
    names_one_by_one = history_before_phase_4(api, one_by_one)
    walk_to_phase_4()
    tigerbeetle_alone(api, in_batches, names_in_batches)
    phase(Phase.READ_CUTOVER)
    assert batches == [(11, "")]

    def refused(store: MongoWalletStore, events: Sequence[CopiedEvent]) -> int:
        raise NotOneBatch("the test copies each event alone")

    monkeypatch.setattr(MongoWalletStore, "copy_back_events", refused)
    phase(Phase.TIGERBEETLE_ONLY)
    tigerbeetle_alone(api, one_by_one, names_one_by_one)
    phase(Phase.READ_CUTOVER)

    copied = mongo_documents(stores, in_batches, names_in_batches)
    assert len(copied["log"]) == 14 and len(copied["holds"]) == 4
    assert copied == mongo_documents(stores, one_by_one, names_one_by_one)
