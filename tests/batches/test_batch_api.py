"""POST /api/batches through Django's full HTTP stack, on each store (and, with TB_ADDRESSES,
the TigerBeetle store on the real server): independent and all-or-nothing batches, the
answers each item's single endpoint gives, idempotency per item, and the permission."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from api import batch_views, views
from api.serializers import render_result
from domain.ids import WalletKey
from domain.wallets import (
    TransactionKind,
    TransactionRecord,
    TransactionState,
    WalletBalance,
    WalletResult,
    WalletStore,
)
from ledger.service import WalletService
from tests.conftest import WALLET_API_PERMISSIONS, token_api_client

BATCH_PERMISSIONS = (*WALLET_API_PERMISSIONS, "registry.post_batches")


@pytest.fixture
def service(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> WalletService:
    service = WalletService(wallet_store)
    monkeypatch.setattr(views, "wallet_service", lambda: service)
    monkeypatch.setattr(batch_views, "wallet_service", lambda: service)
    return service


@pytest.fixture
def api(service: WalletService) -> APIClient:
    return token_api_client(BATCH_PERMISSIONS)


def new_id(name: str = "tx") -> str:
    return f"{name}-{uuid.uuid4().hex}"


def credit_item(client_id: str, amount: str, transaction_id: str | None = None) -> dict[str, Any]:
    return {
        "kind": "credit",
        "client_id": client_id,
        "country": "USA",
        "currency": "USD",
        "amount": amount,
        "transaction_id": transaction_id or new_id(),
    }


def debit_item(client_id: str, amount: str, reference_id: str | None = None) -> dict[str, Any]:
    return {
        "kind": "debit",
        "client_id": client_id,
        "country": "USA",
        "currency": "USD",
        "amount": amount,
        "reference_id": reference_id or new_id("ref"),
    }


def post_batch(api: APIClient, items: list[dict[str, Any]], *, atomic: bool) -> Any:
    return api.post("/api/batches", {"atomic": atomic, "items": items}, format="json")


def balance(api: APIClient, client_id: str) -> Any:
    response = api.get(f"/api/clients/{client_id}/wallets/USA/USD")
    return response.json()["credit"] if response.status_code == 200 else response.status_code


def test_an_independent_batch_answers_each_item_as_its_single_endpoint_in_order(
    api: APIClient,
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [
        credit_item(client_id, "10.00"),
        debit_item(client_id, "3.00"),
        debit_item(client_id, "50.00"),
        debit_item(f"nobody-{uuid.uuid4().hex[:8]}", "1.00"),
        debit_item(client_id, "2.00"),
    ]

    response = post_batch(api, items, atomic=False)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201, 201, 422, 404, 201]
    assert [result.get("error", {}).get("code") for result in results] == [
        None,
        None,
        "insufficient_funds",
        "wallet_not_found",
        None,
    ]
    assert [result["balance"]["credit"] for result in results if "balance" in result] == [
        "10.00",
        "7.00",
        "5.00",
    ]
    assert balance(api, client_id) == "5.00"


def test_an_independent_batch_resent_replays_every_item_and_moves_nothing_twice(
    api: APIClient,
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(client_id, "10.00"), debit_item(client_id, "4.00")]
    first = post_batch(api, items, atomic=False).json()["results"]

    again = post_batch(api, items, atomic=False).json()["results"]

    assert [result["status"] for result in again] == [200, 200]
    assert [result["balance"] for result in again] == [result["balance"] for result in first]
    assert [result["transaction"] for result in again] == [
        result["transaction"] for result in first
    ]
    assert balance(api, client_id) == "6.00"


def test_an_item_of_a_batch_replays_through_its_single_endpoint(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    item = credit_item(client_id, "10.00")
    (posted,) = post_batch(api, [item], atomic=False).json()["results"]

    response = api.post(
        f"/api/clients/{client_id}/wallets/USA/USD/credits",
        {"transaction_id": item["transaction_id"], "amount": "10.00"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["transaction"] == posted["transaction"]
    assert response.json()["balance"] == posted["balance"]


def test_a_single_write_replays_as_an_item_of_a_batch(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    transaction_id = new_id()
    single = api.post(
        f"/api/clients/{client_id}/wallets/USA/USD/credits",
        {"transaction_id": transaction_id, "amount": "10.00"},
        format="json",
    ).json()

    (replayed,) = post_batch(
        api, [credit_item(client_id, "10.00", transaction_id)], atomic=False
    ).json()["results"]

    assert replayed["status"] == 200
    assert replayed["transaction"] == single["transaction"]
    assert replayed["balance"] == single["balance"]


def test_a_batch_with_an_amount_finer_than_its_currency_is_refused_whole(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(client_id, "1.00"), credit_item(client_id, "0.001")]

    response = post_batch(api, items, atomic=False)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]["item"]) == ("invalid_amount", 1)
    assert balance(api, client_id) == 404


def test_an_id_reused_with_other_content_is_an_idempotency_conflict_item(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    item = credit_item(client_id, "10.00")
    post_batch(api, [item], atomic=False)

    (conflict,) = post_batch(api, [{**item, "amount": "11.00"}], atomic=False).json()["results"]

    assert conflict["status"] == 409
    assert conflict["error"]["code"] == "idempotency_conflict"
    assert conflict["error"]["details"]["original"]["amount"] == "10.00"
    assert balance(api, client_id) == "10.00"


def test_an_atomic_batch_applies_every_item(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(client_id, "10.00"), debit_item(client_id, "4.00")]

    response = post_batch(api, items, atomic=True)

    assert response.status_code == 201
    assert [result["status"] for result in response.json()["results"]] == [201, 201]
    assert [result["balance"]["credit"] for result in response.json()["results"]] == [
        "10.00",
        "6.00",
    ]
    assert balance(api, client_id) == "6.00"


def test_an_atomic_batch_refused_names_its_item_and_applies_nothing(api: APIClient) -> None:
    funded = f"client-{uuid.uuid4().hex[:10]}"
    post_batch(api, [credit_item(funded, "5.00")], atomic=False)
    fresh = f"client-{uuid.uuid4().hex[:10]}"
    items = [
        credit_item(funded, "1.00"),
        debit_item(funded, "2.00"),
        debit_item(funded, "100.00"),
        credit_item(fresh, "3.00"),
    ]

    response = post_batch(api, items, atomic=True)

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["details"]["item"]) == ("insufficient_funds", 2)
    assert balance(api, funded) == "5.00"
    assert api.get(f"/api/transactions/{items[0]['transaction_id']}").status_code == 404


def test_an_atomic_batch_refused_leaves_no_wallet_it_would_have_created(api: APIClient) -> None:
    funded = f"client-{uuid.uuid4().hex[:10]}"
    post_batch(api, [credit_item(funded, "5.00")], atomic=False)
    fresh = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(fresh, "3.00"), debit_item(funded, "100.00")]

    response = post_batch(api, items, atomic=True)

    assert (response.status_code, response.json()["error"]["details"]["item"]) == (422, 1)
    assert balance(api, fresh) == 404
    assert api.get(f"/api/clients/{fresh}/wallets").json()["wallets"] == []


def test_a_wallet_a_refused_atomic_batch_met_first_is_created_by_its_next_credit(
    api: APIClient,
) -> None:
    fresh = f"client-{uuid.uuid4().hex[:10]}"
    post_batch(api, [credit_item(fresh, "3.00"), debit_item(fresh, "4.00")], atomic=True)

    response = post_batch(api, [credit_item(fresh, "2.00")], atomic=True)

    assert response.status_code == 201
    assert balance(api, fresh) == "2.00"


def test_an_atomic_batch_refused_on_a_wallet_it_met_first_answers_the_same_when_resent(
    api: APIClient,
) -> None:
    fresh = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(fresh, "3.00"), debit_item(fresh, "4.00")]
    first = post_batch(api, items, atomic=True)

    again = post_batch(api, items, atomic=True)

    assert (first.status_code, first.json()["error"]["code"]) == (422, "insufficient_funds")
    error, again_error = first.json()["error"], again.json()["error"]
    assert (again.status_code, again_error["code"]) == (422, error["code"])
    assert again_error["details"] == error["details"]
    assert balance(api, fresh) == 404


def test_an_atomic_batch_names_a_resent_refused_debit_before_a_later_refusing_item(
    api: APIClient,
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    post_batch(api, [credit_item(client_id, "5.00")], atomic=False)
    refused = debit_item(client_id, "100.00")
    post_batch(api, [refused], atomic=True)

    response = post_batch(
        api, [credit_item(client_id, "1.00"), refused, debit_item(client_id, "50.00")], atomic=True
    )

    error = response.json()["error"]
    assert (response.status_code, error["code"], error["details"]["item"]) == (
        422,
        "insufficient_funds",
        1,
    )
    assert balance(api, client_id) == "5.00"


def test_an_atomic_batch_refused_answers_the_same_when_resent(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    post_batch(api, [credit_item(client_id, "5.00")], atomic=False)
    items = [credit_item(client_id, "1.00"), debit_item(client_id, "100.00")]
    first = post_batch(api, items, atomic=True)

    again = post_batch(api, items, atomic=True)

    assert (again.status_code, again.json()["error"]["code"]) == (422, "insufficient_funds")
    assert again.json()["error"]["details"]["item"] == first.json()["error"]["details"]["item"]
    assert balance(api, client_id) == "5.00"


@pytest.mark.parametrize("atomic", [False, True])
def test_a_batch_with_an_item_its_endpoint_would_refuse_400_is_refused_whole_naming_it(
    api: APIClient, atomic: bool
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(client_id, "1.00"), {**credit_item(client_id, "1.00"), "country": "XX"}]

    response = post_batch(api, items, atomic=atomic)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_country"
    assert response.json()["error"]["details"]["item"] == 1
    assert balance(api, client_id) == 404


def test_an_atomic_batch_resent_replays_and_moves_nothing_twice(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    items = [credit_item(client_id, "10.00"), debit_item(client_id, "4.00")]
    first = post_batch(api, items, atomic=True).json()["results"]

    again = post_batch(api, items, atomic=True)

    assert again.status_code == 200
    assert [result["status"] for result in again.json()["results"]] == [200, 200]
    assert [r["balance"] for r in again.json()["results"]] == [r["balance"] for r in first]
    assert balance(api, client_id) == "6.00"


def test_an_id_used_twice_in_one_batch_refuses_the_batch(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    item = credit_item(client_id, "1.00")

    response = post_batch(api, [item, item], atomic=False)

    assert response.status_code == 400
    assert response.json()["error"]["details"]["item"] == 1
    assert balance(api, client_id) == 404


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"atomic": False},
        {"atomic": "yes", "items": []},
        {"atomic": False, "items": []},
        {"atomic": False, "items": [{"kind": "transfer"}]},
        {"atomic": False, "items": ["credit"]},
        {"atomic": False, "items": [], "extra": 1},
    ],
)
def test_a_batch_of_the_wrong_shape_is_refused_whole(api: APIClient, body: Any) -> None:
    response = api.post("/api/batches", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_an_item_with_a_field_of_another_kind_is_refused(api: APIClient) -> None:
    item = {**credit_item("c", "1.00"), "reference_id": "r"}

    response = post_batch(api, [item], atomic=False)

    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "items[0].reference_id"


def test_a_batch_over_the_item_limit_is_refused(api: APIClient) -> None:
    items = [credit_item("c", "1.00", f"t{index}") for index in range(8190)]

    response = post_batch(api, items, atomic=False)

    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "items"


def test_a_caller_without_post_batches_gets_403(service: WalletService) -> None:
    api = token_api_client(WALLET_API_PERMISSIONS)
    client_id = f"client-{uuid.uuid4().hex[:10]}"

    response = post_batch(api, [credit_item(client_id, "1.00")], atomic=False)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_denied")
    assert api.get(f"/api/clients/{client_id}/wallets/USA/USD").status_code == 404


def test_a_batch_holding_debits_needs_the_debit_permission(service: WalletService) -> None:
    api = token_api_client(
        ("registry.read_wallets", "registry.credit_wallets", "registry.post_batches")
    )

    response = post_batch(api, [debit_item("c", "1.00")], atomic=False)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_denied")


@pytest.mark.parametrize(
    ("currency", "amount_minor", "voided"),
    [("USD", 1230, False), ("JPY", 7, False), ("KWD", 1, True), ("USD", 10**20, True)],
)
def test_an_item_is_rendered_as_its_single_endpoint_renders_it(
    currency: str, amount_minor: int, voided: bool
) -> None:
    key = WalletKey(client_id="c", country="USA", currency=currency, issuer="i" if voided else None)
    moment = datetime(2026, 12, 6, 3, 4, 5, 123000 if voided else 0, tzinfo=UTC)
    result = WalletResult(
        transaction=TransactionRecord(
            transaction_id="t",
            kind=TransactionKind.DEBIT,
            key=key,
            amount_minor=amount_minor,
            state=TransactionState.VOIDED if voided else TransactionState.POSTED,
            created_at=moment,
            made_by="someone",
            voided_at=moment if voided else None,
            voided_by="support" if voided else "",
            void_reason="why" if voided else "",
        ),
        balance=WalletBalance(key, amount_minor, 0, amount_minor * 3),
        replayed=voided,
    )

    assert batch_views.rendered_result(result) == render_result(result)


def test_an_items_balance_leaves_out_what_open_holds_reserve(
    api: APIClient, service: WalletService
) -> None:
    client_id = new_id("client")
    post_batch(api, [credit_item(client_id, "10.00")], atomic=True)
    service.place_hold(
        client_id=client_id,
        country="USA",
        currency="USD",
        amount="3.00",
        hold_id=new_id("hold"),
        expires_in_s=3600,
    )

    response = post_batch(api, [debit_item(client_id, "2.00")], atomic=False)

    item_balance = response.json()["results"][0]["balance"]
    assert (item_balance["credit"], item_balance["held"]) == ("5.00", "3.00")
    assert api.get(f"/api/clients/{client_id}/wallets/USA/USD").json() == item_balance
