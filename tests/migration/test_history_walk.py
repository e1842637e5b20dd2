"""A wallet's balance history answers the same in every phase: written in phase 0 (credits,
debits, voids), then read through the API at each step of the walk (1, 2, 3, the backfill,
4, back to 3) and compared whole, paged by cursor, and within time bounds; writes made in
phase 4 appear on top of the same older points. Holds too: placed, captured, released and
expired in phase 0, carried by the mirror, and again in phase 4."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from domain.history import HistoryPage, HistoryQuery
from domain.ids import WalletKey
from flags.phases import Phase, current_state
from tests.api.test_hold_api import HOLD_PERMISSIONS
from tests.conftest import WALLET_API_PERMISSIONS, token_api_client
from tests.migration.conftest import Stores, legacy_wallet, new_key, tx

pytestmark = pytest.mark.usefixtures(
    "criteria_not_awaited", "rollout_in_one_step", "steps_without_four_eyes"
)
PAGE = 3


def phase(to: Phase, **options: str) -> None:
    args = [str(int(to))] + [f"--{name}={value}" for name, value in options.items()]
    call_command("migration_phase", *args, "--actor", "walk", stdout=StringIO())
    assert current_state().phase == to


def walk_to_phase_4() -> None:
    """From phase 0 into phase 4 as an operator goes: the mirror drained, shadow and read
    rollouts at 100 %, the backfill run."""
    phase(Phase.DUAL_WRITE)
    call_command("mirror", "--drain", stdout=StringIO())
    phase(Phase.SHADOW_READ, shadow=100)
    phase(Phase.READ_CUTOVER, rollout=100)
    call_command("backfill", "--no-progress", stdout=StringIO())
    phase(Phase.TIGERBEETLE_ONLY)


def url(key: WalletKey) -> str:
    return f"/api/clients/{key.client_id}/wallets/{key.country}/{key.currency}"


def write(api: APIClient, key: WalletKey, kind: str, amount: str) -> str:
    transaction_id = tx()
    id_name = "transaction_id" if kind == "credits" else "reference_id"
    body = {id_name: transaction_id, "amount": amount}
    response = api.post(f"{url(key)}/{kind}", body, format="json")
    assert response.status_code == 201, response.content
    time.sleep(0.003)  # whole milliseconds in every store: a time of its own
    return transaction_id


def void(api: APIClient, transaction_id: str) -> None:
    response = api.post(
        f"/api/transactions/{transaction_id}/void", {"reason": "walk"}, format="json"
    )
    assert response.status_code == 200, response.content
    time.sleep(0.003)


def whole_history(api: APIClient, key: WalletKey, **bounds: str) -> list[dict[str, Any]]:
    """Every point, page by page (PAGE a page), through the API."""
    points: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": PAGE, **bounds}
    for _ in range(100):
        response = api.get(f"{url(key)}/history", query)
        assert response.status_code == 200, response.content
        body = response.json()
        points += body["points"]
        if body["next_cursor"] is None:
            return points
        query["cursor"] = body["next_cursor"]
    raise AssertionError("the cursor never reached the end")


def answers(api: APIClient, key: WalletKey, bounds: dict[str, str]) -> dict[str, Any]:
    return {"whole": whole_history(api, key), "bounded": whole_history(api, key, **bounds)}


def written_in_phase_0(api: APIClient, key: WalletKey) -> None:
    credit_id = write(api, key, "credits", "100.00")
    debit_id = write(api, key, "debits", "12.50")
    write(api, key, "credits", "7.25")
    void(api, debit_id)
    second_debit = write(api, key, "debits", "30.00")
    write(api, key, "credits", "0.05")
    void(api, second_debit)
    write(api, key, "debits", "1.00")
    assert credit_id


@contextlib.contextmanager
def mongo_history_refused(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MongoDB's history fails the test if asked: the answers come from TigerBeetle."""

    def refused(query: HistoryQuery) -> HistoryPage:
        raise AssertionError(f"MongoDB was asked for {query}")

    with monkeypatch.context() as patch:
        patch.setattr(stores.mongo, "history", refused)
        yield


def test_the_history_answers_the_same_in_every_phase(
    stores: Stores, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    written_in_phase_0(api, key)
    phase_0 = whole_history(api, key)
    assert len(phase_0) == 8
    bounds = {"from": phase_0[6]["created_at"], "to": phase_0[1]["created_at"]}
    expected = answers(api, key, bounds)
    assert [p["created_at"] for p in expected["bounded"]] == [p["created_at"] for p in phase_0[2:7]]

    phase(Phase.DUAL_WRITE)
    assert answers(api, key, bounds) == expected
    call_command("mirror", "--drain", stdout=StringIO())
    assert answers(api, key, bounds) == expected
    phase(Phase.SHADOW_READ, shadow=100)
    assert answers(api, key, bounds) == expected
    phase(Phase.READ_CUTOVER, rollout=100)
    with mongo_history_refused(stores, monkeypatch):  # TigerBeetle answers from here on
        assert answers(api, key, bounds) == expected
        call_command("backfill", "--no-progress", stdout=StringIO())
        assert answers(api, key, bounds) == expected
        phase(Phase.TIGERBEETLE_ONLY)
        assert answers(api, key, bounds) == expected

    newest = write(api, key, "credits", "3.00")
    in_phase_4 = whole_history(api, key)
    assert [p["transaction_id"] for p in in_phase_4[:1]] == [newest]
    assert in_phase_4[0]["credit"] == "109.30"
    assert in_phase_4[1:] == expected["whole"]
    assert whole_history(api, key, **bounds) == expected["bounded"]

    phase(Phase.READ_CUTOVER)  # back: the phase-4 write is copied back into MongoDB
    assert whole_history(api, key) == in_phase_4
    assert stores.mongo.history(HistoryQuery(key=key, limit=20)) == stores.tigerbeetle.history(
        HistoryQuery(key=key, limit=20)
    )


def test_both_stores_answer_alike_once_the_mirror_has_applied_the_writes(
    stores: Stores, api: APIClient
) -> None:
    key = new_key()
    written_in_phase_0(api, key)
    phase(Phase.DUAL_WRITE)
    call_command("mirror", "--drain", stdout=StringIO())

    for limit in (1, 4, 20):
        query = HistoryQuery(key=key, limit=limit)
        assert stores.tigerbeetle.history(query) == stores.mongo.history(query)


def test_a_legacy_wallet_starts_its_tigerbeetle_history_with_its_opening_balance(
    stores: Stores, api: APIClient
) -> None:
    """Stated in the API's schema and the README: MongoDB never logged what a legacy wallet
    held before its log, and TigerBeetle holds it as one opening pair (code 4)."""
    key = new_key()
    legacy_wallet(stores, key, credit_minor=5_000, debit_minor=500)
    phase(Phase.DUAL_WRITE)
    call_command("backfill", "--no-progress", stdout=StringIO())
    later = write(api, key, "credits", "1.00")
    call_command("mirror", "--drain", stdout=StringIO())
    phase(Phase.SHADOW_READ, shadow=100)
    phase(Phase.READ_CUTOVER, rollout=100)

    points = whole_history(api, key)

    assert [(p["transaction_id"], p["kind"], p["credit"]) for p in points] == [
        (later, "credit", "51.00"),
        (None, "opening_balance", "50.00"),
    ]
    assert points[1]["amount"] is None
    assert [p.transaction_id for p in stores.mongo.history(HistoryQuery(key=key)).points] == [later]


def hold_op(api: APIClient, path: str, body: dict[str, Any] | None = None) -> None:
    response = api.post(path, body or {}, format="json")
    assert response.status_code in (200, 201), response.content
    time.sleep(0.003)


def holds_resolved_every_way(api: APIClient, key: WalletKey) -> list[str]:
    """A hold captured in part, one released, one expired (then a credit, which marks the
    expiry on MongoDB); their ids."""
    captured, released, expired = (f"hold-{tx()}" for _ in range(3))
    for hold_id, amount, expires_in_s in ((captured, "20.00", 3600), (released, "5.00", 3600)):
        body = {"hold_id": hold_id, "amount": amount, "expires_in_s": expires_in_s}
        hold_op(api, f"{url(key)}/holds", body)
    hold_op(api, f"/api/holds/{captured}/capture", {"amount": "12.00"})
    hold_op(api, f"/api/holds/{released}/release")
    body = {"hold_id": expired, "amount": "2.00", "expires_in_s": 1}
    hold_op(api, f"{url(key)}/holds", body)
    time.sleep(1.05)
    write(api, key, "credits", "0.10")
    return [captured, released, expired]


def test_holds_in_the_history_answer_the_same_in_every_phase(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = token_api_client((*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS))
    key = new_key()
    written_in_phase_0(api, key)
    in_phase_0 = holds_resolved_every_way(api, key)
    phase_0 = whole_history(api, key)
    assert [(p["kind"], p["hold_id"], p["held"]) for p in phase_0[:7]] == [
        ("credit", None, "0.00"),
        ("expire", in_phase_0[2], "0.00"),
        ("hold", in_phase_0[2], "2.00"),
        ("release", in_phase_0[1], "0.00"),
        ("capture", in_phase_0[0], "5.00"),
        ("hold", in_phase_0[1], "25.00"),
        ("hold", in_phase_0[0], "20.00"),
    ]
    bounds = {"from": phase_0[8]["created_at"], "to": phase_0[1]["created_at"]}
    expected = answers(api, key, bounds)

    phase(Phase.DUAL_WRITE)
    call_command("mirror", "--drain", stdout=StringIO())
    assert answers(api, key, bounds) == expected
    phase(Phase.SHADOW_READ, shadow=100)
    phase(Phase.READ_CUTOVER, rollout=100)
    with mongo_history_refused(stores, monkeypatch):  # TigerBeetle answers from here on
        assert answers(api, key, bounds) == expected
        call_command("backfill", "--no-progress", stdout=StringIO())
        phase(Phase.TIGERBEETLE_ONLY)
        assert answers(api, key, bounds) == expected

        in_phase_4 = holds_resolved_every_way(api, key)
        now = whole_history(api, key)
        assert [(p["kind"], p["hold_id"]) for p in now[:7]] == [
            ("credit", None),
            ("expire", in_phase_4[2]),
            ("hold", in_phase_4[2]),
            ("release", in_phase_4[1]),
            ("capture", in_phase_4[0]),
            ("hold", in_phase_4[1]),
            ("hold", in_phase_4[0]),
        ]
        assert now[:7] != expected["whole"][:7]  # the phase-4 holds' own times and balances
        assert now[7:] == expected["whole"]
        assert whole_history(api, key, **bounds) == expected["bounded"]

    # Back: the phase-4 holds are copied into MongoDB with their history, and the expiry
    # MongoDB logs for the one TigerBeetle expired waits for the mirror, so MongoDB answers
    # (read-your-writes), the same.
    phase(Phase.READ_CUTOVER)
    assert whole_history(api, key) == now
    query = HistoryQuery(key=key, limit=50)
    assert stores.mongo.history(query) == stores.tigerbeetle.history(query)
