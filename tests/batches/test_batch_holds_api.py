"""Hold items of POST /api/batches (issue 23 item 3) through Django's full HTTP stack, on each
store (and, with TB_ADDRESSES, the TigerBeetle store on the real server): each hold, capture
and release item answers what its single endpoint answers, in order, independent or
all-or-nothing, idempotent per hold id, under its single endpoint's permission."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from api import batch_views, hold_views, views
from api.hold_serializers import render_hold_result
from domain.holds import Hold, HoldResult, HoldState
from domain.ids import WalletKey
from domain.wallets import WalletBalance, WalletStore
from ledger.service import WalletService
from tests.batches.test_batch_api import (
    BATCH_PERMISSIONS,
    credit_item,
    debit_item,
    new_id,
    post_batch,
)
from tests.conftest import token_api_client

HOLD_PERMISSIONS = (
    "registry.add_wallethold",
    "registry.capture_wallethold",
    "registry.release_wallethold",
    "registry.view_wallethold",
)
HOUR_S = 3600


@pytest.fixture
def service(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> WalletService:
    service = WalletService(wallet_store)
    for module in (views, batch_views):
        monkeypatch.setattr(module, "wallet_service", lambda: service)
    monkeypatch.setattr(hold_views.views, "wallet_service", lambda: service)
    return service


@pytest.fixture
def api(service: WalletService) -> APIClient:
    return token_api_client((*BATCH_PERMISSIONS, *HOLD_PERMISSIONS))


def hold_item(
    client_id: str, amount: str, hold_id: str | None = None, expires_in_s: int = HOUR_S
) -> dict[str, Any]:
    return {
        "kind": "hold",
        "client_id": client_id,
        "country": "USA",
        "currency": "USD",
        "amount": amount,
        "hold_id": hold_id or new_id("hold"),
        "expires_in_s": expires_in_s,
    }


def capture_item(hold_id: str, amount: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"kind": "capture", "hold_id": hold_id}
    if amount is not None:
        item["amount"] = amount
    return item


def release_item(hold_id: str) -> dict[str, Any]:
    return {"kind": "release", "hold_id": hold_id}


def funded_wallet(api: APIClient, amount: str = "10.00") -> str:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    response = post_batch(api, [credit_item(client_id, amount)], atomic=True)
    assert response.status_code == 201, response.json()
    return client_id


def wallet(api: APIClient, client_id: str) -> tuple[str, str]:
    body = api.get(f"/api/clients/{client_id}/wallets/USA/USD").json()
    return body["credit"], body["held"]


def codes(results: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
    return [(result["status"], result.get("error", {}).get("code")) for result in results]


def test_held_money_leaves_the_available_credit_at_once_within_the_batch(api: APIClient) -> None:
    client_id = funded_wallet(api)
    items = [
        hold_item(client_id, "6.00"),
        debit_item(client_id, "5.00"),  # only 4.00 available after the hold
        debit_item(client_id, "3.00"),
        hold_item(client_id, "2.00"),  # only 1.00 left
    ]

    results = post_batch(api, items, atomic=False).json()["results"]

    assert codes(results) == [
        (201, None),
        (422, "insufficient_funds"),
        (201, None),
        (422, "insufficient_funds"),
    ]
    assert results[0]["hold"]["state"] == "open"
    assert results[0]["hold"]["hold_id"] == items[0]["hold_id"]
    assert (results[0]["balance"]["credit"], results[0]["balance"]["held"]) == ("4.00", "6.00")
    assert (results[2]["balance"]["credit"], results[2]["balance"]["held"]) == ("1.00", "6.00")
    assert wallet(api, client_id) == ("1.00", "6.00")
    # The refused hold stays refused on a retry of its id, also after a top-up, as a single one.
    post_batch(api, [credit_item(client_id, "50.00")], atomic=False)
    again = post_batch(api, [items[3]], atomic=False).json()["results"]
    assert codes(again) == [(422, "insufficient_funds")]


def test_captures_and_releases_answer_as_their_single_endpoints(api: APIClient) -> None:
    client_id = funded_wallet(api)
    held = [new_id("hold") for _ in range(4)]
    placed = post_batch(
        api, [hold_item(client_id, "2.00", hold_id) for hold_id in held], atomic=True
    )
    assert placed.status_code == 201
    assert wallet(api, client_id) == ("2.00", "8.00")

    items = [
        capture_item(held[0]),  # all of it
        capture_item(held[1], "0.50"),  # part: the rest goes back
        release_item(held[2]),
        capture_item(held[3], "2.01"),  # more than held
        capture_item(new_id("nohold")),
        debit_item(client_id, "5.49"),  # spends what the capture and release freed
    ]
    results = post_batch(api, items, atomic=False).json()["results"]

    assert codes(results) == [
        (201, None),
        (201, None),
        (201, None),
        (422, "capture_exceeds_hold"),
        (404, "hold_not_found"),
        (201, None),
    ]
    assert [results[i]["hold"]["state"] for i in range(3)] == ["captured", "captured", "released"]
    assert [results[i]["hold"]["captured"] for i in range(3)] == ["2.00", "0.50", "0.00"]
    assert [(results[i]["balance"]["credit"], results[i]["balance"]["held"]) for i in range(3)] == [
        ("2.00", "6.00"),
        ("3.50", "4.00"),
        ("5.50", "2.00"),
    ]
    assert wallet(api, client_id) == ("0.01", "2.00")
    # Through the single endpoints: the same holds as the batch left them.
    single = api.post(f"/api/holds/{held[1]}/capture", {"amount": "0.50"}, format="json")
    assert (single.status_code, single.json()["replayed"]) == (200, True)
    conflict = api.post(f"/api/holds/{held[2]}/capture", {}, format="json")
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "hold_not_open")


def test_a_batch_of_hold_items_resent_replays_every_item(api: APIClient) -> None:
    client_id = funded_wallet(api)
    earlier = new_id("hold")
    post_batch(api, [hold_item(client_id, "1.00", earlier)], atomic=True)
    items = [hold_item(client_id, "3.00"), capture_item(earlier, "1.00")]

    first = post_batch(api, items, atomic=False).json()["results"]
    again = post_batch(api, items, atomic=False).json()["results"]

    assert codes(first) == [(201, None), (201, None)]
    assert codes(again) == [(200, None), (200, None)]
    assert [result["replayed"] for result in again] == [True, True]
    assert [result["hold"] for result in again] == [result["hold"] for result in first]
    assert wallet(api, client_id) == ("6.00", "3.00")
    # The same hold id for another amount, or another resolution: as the single endpoints.
    other = post_batch(
        api,
        [hold_item(client_id, "4.00", items[0]["hold_id"]), release_item(earlier)],
        atomic=False,
    ).json()["results"]
    assert codes(other) == [(409, "idempotency_conflict"), (409, "hold_not_open")]
    assert other[1]["error"]["details"]["state"] == "captured"


def test_an_atomic_batch_refused_by_a_hold_item_applies_nothing(api: APIClient) -> None:
    client_id = funded_wallet(api)
    open_hold = new_id("hold")
    post_batch(api, [hold_item(client_id, "4.00", open_hold)], atomic=True)
    new_hold = hold_item(client_id, "1.00")
    items = [
        new_hold,
        capture_item(open_hold, "1.00"),
        debit_item(client_id, "1.00"),
        hold_item(client_id, "8.00"),  # 7.00 left: refused
    ]

    response = post_batch(api, items, atomic=True)

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["details"]["item"]) == ("insufficient_funds", 3)
    assert wallet(api, client_id) == ("6.00", "4.00")
    assert api.get(f"/api/holds/{new_hold['hold_id']}").status_code == 404
    assert api.get(f"/api/holds/{open_hold}").json()["state"] == "open"
    # The refused hold is remembered as a single refused one is, also after a top-up.
    post_batch(api, [credit_item(client_id, "50.00")], atomic=True)
    again = post_batch(api, [items[3]], atomic=False).json()["results"]
    assert codes(again) == [(422, "insufficient_funds")]
    # Without the refusing item, the same batch applies whole.
    applied = post_batch(api, items[:3], atomic=True)
    assert applied.status_code == 201
    assert wallet(api, client_id) == ("57.00", "1.00")


def test_an_expired_hold_cannot_be_captured_in_a_batch(api: APIClient) -> None:
    client_id = funded_wallet(api)
    short = new_id("hold")
    post_batch(api, [hold_item(client_id, "7.00", short, expires_in_s=1)], atomic=True)
    time.sleep(2.5)

    results = post_batch(
        api, [capture_item(short), debit_item(client_id, "9.00")], atomic=False
    ).json()["results"]

    assert codes(results) == [(409, "hold_not_open"), (201, None)]
    assert results[0]["error"]["details"]["state"] == "expired"
    assert wallet(api, client_id) == ("1.00", "0.00")


def test_a_batch_naming_one_hold_twice_is_refused_whole(api: APIClient) -> None:
    client_id = funded_wallet(api)
    hold_id = new_id("hold")
    items = [
        credit_item(client_id, "1.00", hold_id),  # a transfer id: another namespace
        hold_item(client_id, "1.00", hold_id),
        capture_item(hold_id),
    ]

    response = post_batch(api, items, atomic=False)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]["item"]) == ("hold_repeated_in_batch", 2)
    assert wallet(api, client_id) == ("10.00", "0.00")


def test_a_capture_amount_finer_than_the_holds_currency_refuses_the_batch_whole(
    api: APIClient,
) -> None:
    client_id = funded_wallet(api)
    hold_id = new_id("hold")
    post_batch(api, [hold_item(client_id, "1.00", hold_id)], atomic=True)

    response = post_batch(
        api, [debit_item(client_id, "1.00"), capture_item(hold_id, "0.005")], atomic=False
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]["item"]) == ("invalid_amount", 1)
    assert wallet(api, client_id) == ("9.00", "1.00")


@pytest.mark.parametrize(
    ("item", "permission"),
    [
        (hold_item("c", "1.00"), "registry.add_wallethold"),
        (capture_item("h"), "registry.capture_wallethold"),
        (release_item("h"), "registry.release_wallethold"),
    ],
)
def test_a_hold_item_needs_its_single_endpoints_permission(
    service: WalletService, item: dict[str, Any], permission: str
) -> None:
    others = tuple(p for p in HOLD_PERMISSIONS if p != permission)
    refused = token_api_client((*BATCH_PERMISSIONS, *others))
    allowed = token_api_client(("registry.post_batches", permission))

    response = post_batch(refused, [item], atomic=False)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_denied")
    assert post_batch(allowed, [item], atomic=False).status_code == 200


def test_a_hold_item_with_a_field_of_another_kind_is_refused(api: APIClient) -> None:
    response = post_batch(api, [{**release_item("h"), "amount": "1.00"}], atomic=False)

    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "items[0].amount"


@pytest.mark.parametrize(
    ("currency", "amount_minor", "resolved"),
    [("USD", 1230, False), ("JPY", 7, True), ("KWD", 1, True), ("USD", 10**20, False)],
)
def test_a_hold_item_is_rendered_as_its_single_endpoint_renders_it(
    currency: str, amount_minor: int, resolved: bool
) -> None:
    key = WalletKey(
        client_id="c", country="USA", currency=currency, issuer="i" if resolved else None
    )
    moment = datetime(2026, 12, 6, 3, 4, 5, 123000 if resolved else 0, tzinfo=UTC)
    result = HoldResult(
        hold=Hold(
            hold_id="h",
            key=key,
            amount_minor=amount_minor,
            captured_minor=amount_minor if resolved else 0,
            state=HoldState.CAPTURED if resolved else HoldState.OPEN,
            timeout_s=60,
            created_at=moment,
            expires_at=moment + timedelta(seconds=60),
            made_by="someone",
            resolved_at=moment if resolved else None,
            resolved_by="support" if resolved else "",
        ),
        balance=WalletBalance(key, amount_minor, 0, amount_minor * 3, held_minor=amount_minor),
        replayed=resolved,
    )

    assert batch_views.rendered_hold_result(result) == render_hold_result(result)
