"""Hostile input over HTTP: every refusal is a 4xx in the one JSON error shape, with a
specific code, and moves no money. Runs once per store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from ledger.api import views
from ledger.service import WalletService
from ledger.wallets import WalletStore
from tests.conftest import token_api_client


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    """An authenticated client on the store under test that answers a server error as a
    response (as a deployment does) instead of raising it into the test."""
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    client: APIClient = token_api_client()  # type: ignore[assignment]
    client.raise_request_exception = False
    return client


def wallet_url(client_id: str, country: str = "USA", currency: str = "USD") -> str:
    return f"/api/clients/{client_id}/wallets/{country}/{currency}"


def funded_wallet(api: APIClient) -> str:
    """A wallet holding 10.00 USD, so a refused write can be checked to change nothing."""
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    response = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": "10.00"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return client_id


def balance_of(api: APIClient, client_id: str) -> dict[str, Any]:
    response = api.get(wallet_url(client_id))
    assert response.status_code == 200, response.content
    return response.json()


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


def post_credit_body(api: APIClient, client_id: str, body: str) -> Any:
    return api.post(
        f"{wallet_url(client_id)}/credits", data=body, content_type="application/json"
    )


# --- item 8: amounts and bodies that answered 500 ---------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"transaction_id": "t-tiny-string", "amount": "1e-999999999"}',
        '{"transaction_id": "t-tiny-number", "amount": 1e-999999999}',
        '{"transaction_id": "t-huge-number", "amount": 1e999999999}',
    ],
)
def test_an_amount_with_an_extreme_exponent_answers_400_invalid_amount(
    api: APIClient, body: str
) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = post_credit_body(api, client_id, body)

    assert_error(response, 400, "invalid_amount")
    assert balance_of(api, client_id) == before


def test_a_very_deeply_nested_json_body_answers_400_malformed_request(api: APIClient) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = post_credit_body(api, client_id, "[" * 100_000 + "]" * 100_000)

    assert_error(response, 400, "malformed_request")
    assert balance_of(api, client_id) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_standard_json_constant_answers_400_malformed_request(
    api: APIClient, constant: str
) -> None:
    client_id = funded_wallet(api)

    response = post_credit_body(
        api, client_id, f'{{"transaction_id": "t-const", "amount": {constant}}}'
    )

    assert_error(response, 400, "malformed_request")


# --- item 12: only a plain decimal string or an exact JSON number is an amount ----------------


@pytest.mark.parametrize(
    "amount",
    [
        "1_000",
        "1_0.00",
        "\uff11\uff12",  # full-width digits
        "\u0661\u0662",  # Arabic-Indic digits
        "\u06f1\u06f2",  # extended Arabic-Indic digits
        "\u0967",  # Devanagari one
        " 5",
        "5 ",
        " 5 ",
        "\u00a05",  # no-break space
        "5\u00a0",
        "\t5",
        "5\n",
        "+5",
        "1e2",
        "1E2",
        "1e-2",
        ".5",
        "5.",
        "0x10",
        "5.00.0",
        "--5",
        "-5",
        "-0.01",
        "sNaN",
        "-Infinity",
    ],
)
def test_an_amount_that_is_not_a_plain_decimal_string_is_refused_and_moves_nothing(
    api: APIClient, amount: str
) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": amount},
        format="json",
    )
    debit = api.post(
        f"{wallet_url(client_id)}/debits",
        {"reference_id": uuid.uuid4().hex, "amount": amount},
        format="json",
    )

    assert_error(response, 400, "invalid_amount")
    assert_error(debit, 400, "invalid_amount")
    assert balance_of(api, client_id) == before


@pytest.mark.parametrize(
    ("literal", "credited"),
    [("7", "17.00"), ("7.25", "17.25"), ("7.250", "17.25"), ("7e0", "17.00"), ("25e-1", "12.50")],
)
def test_an_exact_json_number_is_taken_as_its_decimal_value(
    api: APIClient, literal: str, credited: str
) -> None:
    client_id = funded_wallet(api)

    response = post_credit_body(
        api, client_id, f'{{"transaction_id": "{uuid.uuid4().hex}", "amount": {literal}}}'
    )

    assert response.status_code == 201, response.content
    assert balance_of(api, client_id)["credit"] == credited


def test_a_json_number_finer_than_the_currency_is_refused_not_rounded(api: APIClient) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = post_credit_body(
        api, client_id, '{"transaction_id": "t-fine", "amount": 0.10000000000000000555}'
    )

    assert_error(response, 400, "invalid_amount")
    assert balance_of(api, client_id) == before
