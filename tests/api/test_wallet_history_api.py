"""`GET .../history` through Django's full HTTP stack, per store: pages by cursor, time bounds,
every refusal with its code."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from api import views
from domain.history import HISTORY_LIMIT_MAX
from domain.wallets import WalletStore
from ledger.service import WalletService
from tests.api.test_hold_api import HOLD_PERMISSIONS
from tests.conftest import WALLET_API_PERMISSIONS, token_api_client


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    """An authenticated REST client whose requests are served by the store under test."""
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    return token_api_client()


def wallet_url(client_id: str) -> str:
    return f"/api/clients/{client_id}/wallets/USA/USD"


def new_client_id() -> str:
    return f"client-{uuid.uuid4().hex[:10]}"


def credit(api: APIClient, client_id: str, amount: str, *, issuer: str = "") -> str:
    transaction_id = f"tx-{uuid.uuid4().hex}"
    body = {"transaction_id": transaction_id, "amount": amount, "issuer": issuer}
    response = api.post(f"{wallet_url(client_id)}/credits", body, format="json")
    assert response.status_code == 201, response.content
    time.sleep(0.003)  # stores keep whole milliseconds: each write at a time of its own
    return transaction_id


def history(api: APIClient, client_id: str, **query: Any) -> Any:
    return api.get(f"{wallet_url(client_id)}/history", query)


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def test_each_point_carries_the_transaction_and_the_balance_fields_as_the_balance_does(
    api: APIClient,
) -> None:
    client_id = new_client_id()
    first = credit(api, client_id, "10.50")
    debit_id = f"ref-{uuid.uuid4().hex}"
    api.post(
        f"{wallet_url(client_id)}/debits",
        {"reference_id": debit_id, "amount": "0.50"},
        format="json",
    )

    response = history(api, client_id)

    assert response.status_code == 200, response.content
    body = response.json()
    balance = api.get(wallet_url(client_id)).json()
    newest = body["points"][0]
    assert {name: newest[name] for name in ("credit", "debit", "historical_credit")} == {
        name: balance[name] for name in ("credit", "debit", "historical_credit")
    }
    assert (newest["transaction_id"], newest["kind"], newest["amount"]) == (
        debit_id,
        "debit",
        "0.50",
    )
    assert body["points"][1]["transaction_id"] == first
    assert body["points"][1]["credit"] == "10.50"
    assert body["points"][1]["created_at"].endswith("Z")
    assert (body["client_id"], body["country"], body["currency"], body["issuer"]) == (
        client_id,
        "USA",
        "USD",
        None,
    )
    assert body["next_cursor"] is None


def test_a_hold_event_is_a_point_with_its_hold_id_and_every_point_answers_held(
    wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    api = token_api_client((*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS))
    client_id = new_client_id()
    first = credit(api, client_id, "10.00")
    hold_id = f"hold-{uuid.uuid4().hex}"
    body = {"hold_id": hold_id, "amount": "4.00", "expires_in_s": 3600}
    assert api.post(f"{wallet_url(client_id)}/holds", body, format="json").status_code == 201
    time.sleep(0.003)
    captured = api.post(f"/api/holds/{hold_id}/capture", {"amount": "1.50"}, format="json")
    assert captured.status_code == 201, captured.content

    points = history(api, client_id, limit=2).json()["points"]
    rest = history(api, client_id, cursor=history(api, client_id, limit=2).json()["next_cursor"])

    assert [
        (p["transaction_id"], p["hold_id"], p["kind"], p["amount"], p["credit"], p["held"])
        for p in points
    ] == [
        (None, hold_id, "capture", "1.50", "8.50", "0.00"),
        (None, hold_id, "hold", "4.00", "6.00", "4.00"),
    ]
    assert [(p["transaction_id"], p["hold_id"], p["held"]) for p in rest.json()["points"]] == [
        (first, None, "0.00")
    ]


def test_paging_by_next_cursor_reaches_every_point_once_and_ends_with_null(
    api: APIClient,
) -> None:
    client_id = new_client_id()
    ids = [credit(api, client_id, f"{n}.00") for n in range(1, 6)]
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 2}
    for _ in range(10):
        body = history(api, client_id, **query).json()
        seen += [point["transaction_id"] for point in body["points"]]
        if body["next_cursor"] is None:
            break
        query["cursor"] = body["next_cursor"]

    assert seen == list(reversed(ids))


def test_from_is_inclusive_and_to_is_exclusive(api: APIClient) -> None:
    client_id = new_client_id()
    ids = [credit(api, client_id, f"{n}.00") for n in range(1, 5)]
    times = {p["transaction_id"]: p["created_at"] for p in history(api, client_id).json()["points"]}

    body = history(api, client_id, **{"from": times[ids[1]], "to": times[ids[3]]}).json()

    assert [point["transaction_id"] for point in body["points"]] == [ids[2], ids[1]]


def test_a_wallet_with_an_issuer_is_read_with_the_issuer_parameter(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")
    with_issuer = credit(api, client_id, "2.00", issuer="bank-7")

    body = history(api, client_id, issuer="bank-7").json()

    assert [point["transaction_id"] for point in body["points"]] == [with_issuer]
    assert body["issuer"] == "bank-7"


def test_an_unknown_wallet_is_404_wallet_not_found(api: APIClient) -> None:
    response = history(api, new_client_id())

    assert response.status_code == 404
    assert error_code(response) == "wallet_not_found"


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-12-01", "2026-12-01T00:00:00", "2026-13-01T00:00:00Z", "x" * 100],
)
def test_a_time_that_is_not_iso_8601_with_an_offset_is_400_invalid_time(
    api: APIClient, value: str
) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")

    response = history(api, client_id, **{"from": value})

    assert response.status_code == 400
    assert error_code(response) == "invalid_time"
    assert response.json()["error"]["details"]["field"] == "from"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-12-01T00:00:00Z", "2026-12-01T01:00:00+01:00"),
    ],
)
def test_from_not_before_to_is_400_invalid_time_range(api: APIClient, start: str, end: str) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")

    response = history(api, client_id, **{"from": start, "to": end})

    assert response.status_code == 400
    assert error_code(response) == "invalid_time_range"


@pytest.mark.parametrize("limit", ["0", str(HISTORY_LIMIT_MAX + 1), "-1", "2.5", "ten"])
def test_a_limit_outside_1_to_the_maximum_is_400_invalid_limit(api: APIClient, limit: str) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")

    response = history(api, client_id, limit=limit)

    assert response.status_code == 400
    assert error_code(response) == "invalid_limit"


def _token(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "!!!", _token({"v": 1}), _token({"v": 9, "w": "x", "t": "tx"}), "a" * 600],
)
def test_a_cursor_the_history_did_not_give_is_400_invalid_cursor(
    api: APIClient, cursor: str
) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")

    response = history(api, client_id, cursor=cursor)

    assert response.status_code == 400
    assert error_code(response) == "invalid_cursor"


def test_another_wallets_cursor_is_400_invalid_cursor(api: APIClient) -> None:
    client_id, other = new_client_id(), new_client_id()
    credit(api, client_id, "1.00")
    for _ in range(2):
        credit(api, other, "1.00")
    cursor = history(api, other, limit=1).json()["next_cursor"]
    assert cursor

    response = history(api, client_id, cursor=cursor)

    assert response.status_code == 400
    assert error_code(response) == "invalid_cursor"


def test_reading_history_needs_the_read_wallets_permission(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")
    writer = token_api_client(("registry.credit_wallets",))

    response = writer.get(f"{wallet_url(client_id)}/history")

    assert response.status_code == 403
    assert error_code(response) == "permission_denied"


def test_the_schema_states_the_history_parameters_and_every_refusal(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/clients/{client_id}/wallets/{country}/{currency}/history"][
        "get"
    ]

    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == HISTORY_LIMIT_MAX
    assert parameters["limit"]["schema"]["minimum"] == 1
    assert parameters["from"]["schema"]["format"] == "date-time"
    assert "Inclusive" in parameters["from"]["description"]
    assert "Exclusive" in parameters["to"]["description"]
    described = operation["responses"]["400"]["description"]
    for code in ("invalid_time", "invalid_time_range", "invalid_limit", "invalid_cursor"):
        assert code in described
    assert "wallet_not_found" in operation["responses"]["404"]["description"]
