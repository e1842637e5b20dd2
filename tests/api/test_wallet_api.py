"""The REST API through Django's full HTTP stack (URLs, auth, parsing, errors), per store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from api import views
from domain.wallets import WalletStore
from ledger.service import WalletService
from tests.conftest import token_api_client


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    """An authenticated REST client whose requests are served by the store under test."""
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    return token_api_client()


class _RunIds(dict):
    """Transaction ids unique to this run, so a persistent real cluster never sees one twice."""

    def __missing__(self, name: str) -> str:
        self[name] = f"{name}-{uuid.uuid4().hex}"
        return self[name]


TX = _RunIds()


def wallet_url(client_id: str, *, country: str = "USA", currency: str = "USD") -> str:
    return f"/api/clients/{client_id}/wallets/{country}/{currency}"


def new_client_id() -> str:
    return f"client-{uuid.uuid4().hex[:10]}"


def credit(
    api: APIClient, client_id: str, amount: Any, transaction_id: str | None = None, **wallet: str
) -> Any:
    return api.post(
        f"{wallet_url(client_id, **wallet)}/credits",
        {"transaction_id": transaction_id or uuid.uuid4().hex, "amount": amount},
        format="json",
    )


def debit(api: APIClient, client_id: str, amount: Any, reference_id: str | None = None) -> Any:
    return api.post(
        f"{wallet_url(client_id)}/debits",
        {"reference_id": reference_id or uuid.uuid4().hex, "amount": amount},
        format="json",
    )


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


def test_add_credit_answers_201_with_the_transaction_and_the_new_balance(api: APIClient) -> None:
    client_id = new_client_id()

    response = credit(api, client_id, "10.50", transaction_id=TX["t-1"])

    assert response.status_code == 201
    body = response.json()
    assert body["transaction"]["transaction_id"] == TX["t-1"]
    assert body["transaction"]["amount"] == "10.50"
    assert body["balance"] == {
        "client_id": client_id,
        "country": "USA",
        "currency": "USD",
        "issuer": None,
        "credit": "10.50",
        "debit": "0.00",
        "historical_credit": "10.50",
        "held": "0.00",
    }


def test_a_json_number_amount_is_taken_exactly_not_as_a_float(api: APIClient) -> None:
    response = api.post(
        f"{wallet_url(new_client_id())}/credits",
        data=f'{{"transaction_id": "{TX["t-2"]}", "amount": 0.1}}',
        content_type="application/json",
    )

    assert response.status_code == 201
    assert response.json()["balance"]["credit"] == "0.10"


def test_retrying_a_credit_answers_200_with_the_original_body(api: APIClient) -> None:
    client_id = new_client_id()
    first = credit(api, client_id, "5.00", transaction_id=TX["same"])

    retry = credit(api, client_id, "5.00", transaction_id=TX["same"])

    assert retry.status_code == 200
    assert retry.json()["balance"] == first.json()["balance"]
    assert retry.json()["replayed"] is True


def test_reusing_a_transaction_id_with_another_amount_answers_409(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "5.00", transaction_id=TX["dup"])

    response = credit(api, client_id, "6.00", transaction_id=TX["dup"])

    assert response.status_code == 409
    assert error_code(response) == "idempotency_conflict"


def test_subtract_credit_answers_201_with_the_reduced_balance(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "10.00")

    response = debit(api, client_id, "2.25")

    assert response.status_code == 201
    assert response.json()["balance"]["credit"] == "7.75"
    assert response.json()["balance"]["debit"] == "2.25"


def test_subtracting_more_than_available_answers_422_insufficient_funds(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")

    response = debit(api, client_id, "1.01")

    assert response.status_code == 422
    assert error_code(response) == "insufficient_funds"


def test_subtracting_from_an_unknown_wallet_answers_404(api: APIClient) -> None:
    response = debit(api, new_client_id(), "1.00")

    assert response.status_code == 404
    assert error_code(response) == "wallet_not_found"


@pytest.mark.parametrize(
    "amount", ["0", "0.00", "-1.00", "0.001", "NaN", "Infinity", "1e400", "abc", "", "1,00"]
)
def test_an_amount_that_is_not_a_positive_amount_of_the_currency_answers_400(
    api: APIClient, amount: str
) -> None:
    response = credit(api, new_client_id(), amount)

    assert response.status_code == 400
    assert error_code(response) == "invalid_amount"


@pytest.mark.parametrize("amount", [True, None, [1], {"value": 1}])
def test_an_amount_of_the_wrong_json_type_answers_400_validation_error(
    api: APIClient, amount: Any
) -> None:
    response = credit(api, new_client_id(), amount)

    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "amount" in response.json()["error"]["details"]["fields"]


def test_an_amount_beyond_the_ledger_range_answers_400_invalid_amount(api: APIClient) -> None:
    response = credit(api, new_client_id(), "1" + "0" * 30)

    assert response.status_code == 400
    assert error_code(response) == "invalid_amount"


def test_yen_has_no_minor_unit_so_a_fraction_is_refused(api: APIClient) -> None:
    response = credit(api, new_client_id(), "100.5", country="JPN", currency="JPY")

    assert response.status_code == 400
    assert error_code(response) == "invalid_amount"


def test_an_unknown_currency_answers_400_unknown_currency(api: APIClient) -> None:
    response = credit(api, new_client_id(), "1.00", currency="XYZ")

    assert response.status_code == 400
    assert error_code(response) == "unknown_currency"


def test_an_unknown_country_answers_400_unknown_country(api: APIClient) -> None:
    response = credit(api, new_client_id(), "1.00", country="QQQ")

    assert response.status_code == 400
    assert error_code(response) == "unknown_country"


def test_a_missing_transaction_id_answers_400_naming_the_field(api: APIClient) -> None:
    response = api.post(f"{wallet_url(new_client_id())}/credits", {"amount": "1.00"}, format="json")

    assert response.status_code == 400
    assert "transaction_id" in response.json()["error"]["details"]["fields"]


def test_malformed_json_answers_400(api: APIClient) -> None:
    response = api.post(
        f"{wallet_url(new_client_id())}/credits", data="{nope", content_type="application/json"
    )

    assert response.status_code == 400
    assert error_code(response) == "malformed_request"


def test_balance_answers_the_wallet_and_404_for_an_unknown_one(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "3.00")

    found = api.get(wallet_url(client_id))
    missing = api.get(wallet_url(new_client_id()))

    assert found.status_code == 200
    assert found.json()["credit"] == "3.00"
    assert missing.status_code == 404
    assert error_code(missing) == "wallet_not_found"


def test_country_may_be_given_as_alpha_2_and_is_answered_as_alpha_3(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "3.00", country="US")

    response = api.get(wallet_url(client_id, country="USA"))

    assert response.json()["country"] == "USA"


def test_all_balances_of_a_client_answers_every_wallet(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "1.00")
    credit(api, client_id, "2.000", country="KWT", currency="KWD")

    response = api.get(f"/api/clients/{client_id}/wallets")

    assert response.status_code == 200
    wallets = {(w["currency"], w["credit"]) for w in response.json()["wallets"]}
    assert wallets == {("USD", "1.00"), ("KWD", "2.000")}


def test_void_answers_200_and_records_the_caller_as_who_voided(api: APIClient) -> None:
    client_id = new_client_id()
    credit(api, client_id, "9.00", transaction_id=TX["to-void"])

    response = api.post(
        f"/api/transactions/{TX['to-void']}/void", {"reason": "fraud"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["balance"]["credit"] == "0.00"
    assert response.json()["transaction"]["state"] == "voided"
    assert response.json()["transaction"]["voided_by"].startswith("api-")


def test_voiding_twice_answers_409_already_voided(api: APIClient) -> None:
    credit(api, new_client_id(), "9.00", transaction_id=TX["twice"])
    api.post(f"/api/transactions/{TX['twice']}/void", {"reason": "x"}, format="json")

    response = api.post(f"/api/transactions/{TX['twice']}/void", {"reason": "x"}, format="json")

    assert response.status_code == 409
    assert error_code(response) == "already_voided"


def test_a_void_without_a_reason_answers_400(api: APIClient) -> None:
    credit(api, new_client_id(), "9.00", transaction_id=TX["no-reason"])

    response = api.post(f"/api/transactions/{TX['no-reason']}/void", {}, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()["error"]["details"]["fields"]


def test_voiding_an_unknown_transaction_answers_404(api: APIClient) -> None:
    response = api.post("/api/transactions/nope/void", {"reason": "x"}, format="json")

    assert response.status_code == 404
    assert error_code(response) == "transaction_not_found"


def test_reading_a_transaction_answers_its_state(api: APIClient) -> None:
    credit(api, new_client_id(), "4.00", transaction_id=TX["readme"])

    response = api.get(f"/api/transactions/{TX['readme']}")

    assert response.status_code == 200
    assert response.json()["state"] == "posted"
    assert response.json()["amount"] == "4.00"


def test_anonymous_requests_answer_401(wallet_store: WalletStore) -> None:
    response = APIClient().get(wallet_url(new_client_id()))

    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"


def test_ping_answers_the_authenticated_user(api: APIClient) -> None:
    response = api.get("/api/ping")

    assert response.status_code == 200
    assert response.json()["user"].startswith("api-")


def test_an_amount_in_another_currency_than_the_wallet_answers_422_cross_currency(
    api: APIClient,
) -> None:
    response = api.post(
        f"{wallet_url(new_client_id())}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": "1.00", "currency": "EUR"},
        format="json",
    )

    assert response.status_code == 422
    assert error_code(response) == "cross_currency"


def test_an_amount_stating_the_wallets_own_currency_is_accepted(api: APIClient) -> None:
    response = api.post(
        f"{wallet_url(new_client_id())}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": "1.00", "currency": "usd"},
        format="json",
    )

    assert response.status_code == 201
