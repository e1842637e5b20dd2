"""The hold API through Django's full HTTP stack, per store, as users who are not superusers:
every answer and every error code the schema lists for the hold operations."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from api import views
from domain.wallets import WalletStore
from ledger.service import WalletService
from tests.conftest import api_client_for, permitted_user, token_api_client
from tests.roles import SERVICE_ACCOUNT, role

HOLD_PERMISSIONS = (
    "registry.read_wallets",
    "registry.credit_wallets",
    "registry.debit_wallets",
    "registry.add_wallethold",
    "registry.capture_wallethold",
    "registry.release_wallethold",
    "registry.view_wallethold",
)


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    """A client holding the payment system's permissions, served by the store under test."""
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    return token_api_client(HOLD_PERMISSIONS)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def funded_wallet(api: APIClient, amount: str = "10.00", *, currency: str = "USD") -> str:
    """A wallet's URL, credited with `amount`."""
    url = f"/api/clients/{new_id('client')}/wallets/USA/{currency}"
    response = api.post(
        f"{url}/credits", {"transaction_id": new_id("tx"), "amount": amount}, format="json"
    )
    assert response.status_code == 201
    return url


def place(api: APIClient, wallet_url: str, **body: Any) -> Any:
    return api.post(
        f"{wallet_url}/holds",
        {"hold_id": new_id("hold"), "amount": "3.00", "expires_in_s": 3600, **body},
        format="json",
    )


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def test_placing_a_hold_answers_201_with_the_hold_and_the_held_balance(api: APIClient) -> None:
    wallet = funded_wallet(api)

    response = place(api, wallet, amount="3.50")

    body = response.json()
    assert response.status_code == 201
    assert (body["hold"]["state"], body["hold"]["amount"], body["hold"]["captured"]) == (
        "open",
        "3.50",
        "0.00",
    )
    assert body["hold"]["expires_in_s"] == 3600
    assert (body["balance"]["credit"], body["balance"]["held"]) == ("6.50", "3.50")
    assert api.get(wallet).json()["held"] == "3.50"


def test_placing_the_same_hold_again_answers_200_replayed(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = new_id("hold")
    place(api, wallet, hold_id=hold_id)

    again = place(api, wallet, hold_id=hold_id)

    assert (again.status_code, again.json()["replayed"]) == (200, True)
    assert api.get(wallet).json()["held"] == "3.00"


def test_capture_with_an_amount_answers_201_and_posts_it(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]

    response = api.post(f"/api/holds/{hold_id}/capture", {"amount": "1.25"}, format="json")

    assert response.status_code == 201
    assert (response.json()["hold"]["state"], response.json()["hold"]["captured"]) == (
        "captured",
        "1.25",
    )
    balance = api.get(wallet).json()
    assert (balance["credit"], balance["debit"], balance["held"]) == ("8.75", "1.25", "0.00")


def test_capture_without_a_body_takes_the_whole_hold(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]

    response = api.post(f"/api/holds/{hold_id}/capture")

    assert (response.status_code, response.json()["hold"]["captured"]) == (201, "3.00")


def test_release_answers_201_then_200_replayed(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]

    first = api.post(f"/api/holds/{hold_id}/release")
    again = api.post(f"/api/holds/{hold_id}/release")

    assert (first.status_code, again.status_code) == (201, 200)
    assert api.get(wallet).json()["credit"] == "10.00"


def test_a_hold_reads_back_with_who_placed_and_who_released_it(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]
    api.post(f"/api/holds/{hold_id}/release")

    response = api.get(f"/api/holds/{hold_id}")

    body = response.json()
    assert response.status_code == 200
    assert body["state"] == "released"
    assert body["made_by"] == body["resolved_by"] != ""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"expires_in_s": "60"}, "validation_error"),
        ({"expires_in_s": 0}, "validation_error"),
        ({"expires_in_s": 2_592_001}, "validation_error"),
        ({"hold_id": " padded"}, "validation_error"),
        ({"surprise": 1}, "validation_error"),
        ({"amount": "1.001"}, "invalid_amount"),
        ({"amount": "0"}, "invalid_amount"),
        ({"currency": "XYZ"}, "unknown_currency"),
    ],
)
def test_an_invalid_hold_is_400_and_holds_nothing(
    api: APIClient, body: dict[str, Any], code: str
) -> None:
    wallet = funded_wallet(api)

    response = place(api, wallet, **body)

    assert (response.status_code, error_code(response)) == (400, code)
    assert api.get(wallet).json()["held"] == "0.00"


def test_a_hold_in_an_unknown_country_is_400_unknown_country(api: APIClient) -> None:
    response = place(api, f"/api/clients/{new_id('client')}/wallets/ZZZ/USD")

    assert (response.status_code, error_code(response)) == (400, "unknown_country")


def test_a_hold_on_an_unknown_wallet_is_404_wallet_not_found(api: APIClient) -> None:
    response = place(api, f"/api/clients/{new_id('client')}/wallets/USA/USD")

    assert (response.status_code, error_code(response)) == (404, "wallet_not_found")


@pytest.mark.parametrize("operation", ["capture", "release", "read"])
def test_an_unknown_hold_is_404_hold_not_found(api: APIClient, operation: str) -> None:
    url = f"/api/holds/{new_id('hold')}"

    response = api.get(url) if operation == "read" else api.post(f"{url}/{operation}")

    assert (response.status_code, error_code(response)) == (404, "hold_not_found")


def test_a_hold_id_reused_for_another_amount_is_409_idempotency_conflict(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = new_id("hold")
    place(api, wallet, hold_id=hold_id)

    response = place(api, wallet, hold_id=hold_id, amount="4.00")

    assert (response.status_code, error_code(response)) == (409, "idempotency_conflict")


def test_a_capture_after_a_release_is_409_hold_not_open_with_its_state(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]
    api.post(f"/api/holds/{hold_id}/release")

    response = api.post(f"/api/holds/{hold_id}/capture")

    assert (response.status_code, error_code(response)) == (409, "hold_not_open")
    assert response.json()["error"]["details"] == {"state": "released"}
    assert api.get(wallet).json()["debit"] == "0.00"


def test_a_hold_past_the_available_credit_is_422_insufficient_funds(api: APIClient) -> None:
    wallet = funded_wallet(api, "2.00")

    response = place(api, wallet, amount="2.01")

    assert (response.status_code, error_code(response)) == (422, "insufficient_funds")


def test_a_hold_stated_in_another_currency_is_422_cross_currency(api: APIClient) -> None:
    wallet = funded_wallet(api)

    response = place(api, wallet, currency="EUR")

    assert (response.status_code, error_code(response)) == (422, "cross_currency")


def test_a_capture_above_the_hold_is_422_capture_exceeds_hold(api: APIClient) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]

    response = api.post(f"/api/holds/{hold_id}/capture", {"amount": "3.01"}, format="json")

    assert (response.status_code, error_code(response)) == (422, "capture_exceeds_hold")
    assert api.get(f"/api/holds/{hold_id}").json()["state"] == "open"


def test_a_capture_amount_finer_than_the_holds_currency_is_400_invalid_amount(
    api: APIClient,
) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]

    response = api.post(f"/api/holds/{hold_id}/capture", {"amount": "1.001"}, format="json")

    assert (response.status_code, error_code(response)) == (400, "invalid_amount")


def test_without_the_hold_permissions_every_hold_operation_is_403(
    api: APIClient, wallet_store: WalletStore
) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]
    reader = api_client_for(permitted_user(("registry.read_wallets",)))

    statuses = [
        reader.post(f"{wallet}/holds", {"hold_id": new_id("hold"), "amount": "1"}).status_code,
        reader.post(f"/api/holds/{hold_id}/capture").status_code,
        reader.post(f"/api/holds/{hold_id}/release").status_code,
        reader.get(f"/api/holds/{hold_id}").status_code,
    ]

    assert statuses == [403, 403, 403, 403]
    assert api.get(f"/api/holds/{hold_id}").json()["state"] == "open"


def test_a_service_account_places_captures_releases_and_reads_holds(api: APIClient) -> None:
    wallet = funded_wallet(api)
    user = permitted_user(())
    user.groups.add(role(SERVICE_ACCOUNT))
    service = api_client_for(user)

    first = place(service, wallet).json()["hold"]["hold_id"]
    second = place(service, wallet).json()["hold"]["hold_id"]

    assert service.post(f"/api/holds/{first}/capture").status_code == 201
    assert service.post(f"/api/holds/{second}/release").status_code == 201
    assert service.get(f"/api/holds/{first}").status_code == 200


def test_support_reads_and_releases_holds_but_neither_places_nor_captures(
    api: APIClient,
) -> None:
    wallet = funded_wallet(api)
    hold_id = place(api, wallet).json()["hold"]["hold_id"]
    user = permitted_user(())
    user.groups.add(role("Support"))
    support = api_client_for(user)

    assert place(support, wallet).status_code == 403
    assert support.post(f"/api/holds/{hold_id}/capture").status_code == 403
    assert support.get(f"/api/holds/{hold_id}").status_code == 200
    assert support.post(f"/api/holds/{hold_id}/release").status_code == 201
