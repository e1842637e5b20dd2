"""Hostile input over HTTP: every refusal is a 4xx in the one JSON error shape, with a
specific code, and moves no money. Runs once per store."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from rest_framework.test import APIClient

from api import views
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import WalletStore
from ledger.service import WalletService
from tests.conftest import token_api_client


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    """An authenticated client on the store under test that answers a server error as a
    response (as a deployment does) instead of raising it into the test."""
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    client: APIClient = token_api_client()
    client.raise_request_exception = False
    return client


def wallet_url(client_id: str, *, country: str = "USA", currency: str = "USD") -> str:
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


def post_credit_body(api: APIClient, client_id: str, *, body: str) -> Any:
    return api.post(f"{wallet_url(client_id)}/credits", data=body, content_type="application/json")


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

    response = post_credit_body(api, client_id, body=body)

    assert_error(response, 400, "invalid_amount")
    assert balance_of(api, client_id) == before


def test_a_very_deeply_nested_json_body_answers_400_malformed_request(api: APIClient) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = post_credit_body(api, client_id, body="[" * 100_000 + "]" * 100_000)

    assert_error(response, 400, "malformed_request")
    assert balance_of(api, client_id) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_standard_json_constant_answers_400_malformed_request(
    api: APIClient, constant: str
) -> None:
    client_id = funded_wallet(api)

    response = post_credit_body(
        api, client_id, body=f'{{"transaction_id": "t-const", "amount": {constant}}}'
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
        api, client_id, body=f'{{"transaction_id": "{uuid.uuid4().hex}", "amount": {literal}}}'
    )

    assert response.status_code == 201, response.content
    assert balance_of(api, client_id)["credit"] == credited


def test_a_json_number_finer_than_the_currency_is_refused_not_rounded(api: APIClient) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = post_credit_body(
        api, client_id, body='{"transaction_id": "t-fine", "amount": 0.10000000000000000555}'
    )

    assert_error(response, 400, "invalid_amount")
    assert balance_of(api, client_id) == before


# --- item 9: one id rule for ids from the path, the query and the body -----------------------

BAD_IDS = [
    "a\x00b",  # NUL
    "a\x01b",
    "a\tb",
    "a\nb",
    "a\x1fb",
    "a\x7fb",  # DEL
    "a\x85b",  # C1 next line
    "a\u200bb",  # zero-width space
    "a\u202eb",  # right-to-left override
    "a\ufeffb",  # byte order mark
    "a\u2028b",  # line separator
    " ab",
    "ab ",
    "ab\u00a0",
    " ",
    "x" * 129,
]


def quoted(identifier: str) -> str:
    return quote(identifier, safe="")


def id_requests(bad: str, *, client_id: str) -> dict[str, Any]:
    """Every place a client sends an id, each carrying `bad` (the rest valid)."""
    wallet = wallet_url(client_id)
    return {
        "client id, balance": ("get", f"{wallet_url(quoted(bad))}", None),
        "client id, all balances": ("get", f"/api/clients/{quoted(bad)}/wallets", None),
        "client id, credit": (
            "post",
            f"{wallet_url(quoted(bad))}/credits",
            {"transaction_id": uuid.uuid4().hex, "amount": "1.00"},
        ),
        "client id, debit": (
            "post",
            f"{wallet_url(quoted(bad))}/debits",
            {"reference_id": uuid.uuid4().hex, "amount": "1.00"},
        ),
        "issuer, query": ("get", f"{wallet}?issuer={quoted(bad)}", None),
        "issuer, credit body": (
            "post",
            f"{wallet}/credits",
            {"transaction_id": uuid.uuid4().hex, "amount": "1.00", "issuer": bad},
        ),
        "transaction id, credit body": (
            "post",
            f"{wallet}/credits",
            {"transaction_id": bad, "amount": "1.00"},
        ),
        "reference id, debit body": (
            "post",
            f"{wallet}/debits",
            {"reference_id": bad, "amount": "1.00"},
        ),
        "transaction id, read": ("get", f"/api/transactions/{quoted(bad)}", None),
        "transaction id, void": (
            "post",
            f"/api/transactions/{quoted(bad)}/void",
            {"reason": "hostile"},
        ),
    }


def send(api: APIClient, method: str, *, url: str, body: Any) -> Any:
    if method == "get":
        return api.get(url)
    return api.post(url, body, format="json")


@pytest.mark.parametrize("bad", BAD_IDS, ids=ascii)
def test_an_id_breaking_the_id_rule_is_refused_400_everywhere_a_client_sends_one(
    api: APIClient, bad: str
) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    answers = {
        place: send(api, method, url=url, body=body)
        for place, (method, url, body) in id_requests(bad, client_id=client_id).items()
    }

    for place, response in answers.items():
        assert response.status_code == 400, (place, response.content)
        assert response.json()["error"]["code"] == "validation_error", place
    assert balance_of(api, client_id) == before
    assert api.get(f"/api/clients/{quoted(bad)}/wallets").status_code == 400


@pytest.mark.parametrize("value", [12345, 1.5, True, ["a"], {"a": 1}])
def test_a_body_id_that_is_not_a_json_string_is_refused_400(api: APIClient, value: Any) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": value, "amount": "1.00"},
        format="json",
    )

    assert_error(response, 400, "validation_error")
    assert balance_of(api, client_id) == before


def test_a_lone_surrogate_in_a_body_id_is_refused_400(api: APIClient) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = post_credit_body(
        api, client_id, body='{"transaction_id": "a\\ud800b", "amount": "1"}'
    )

    assert_error(response, 400, "validation_error")
    assert balance_of(api, client_id) == before


@pytest.mark.parametrize(
    "good", ["void:tx1", "tx 1", "Zoë-ß-東京", "a%2Fb", "a+b=c?d#e", "x" * 128]
)
def test_an_id_within_the_rule_round_trips_through_path_and_body(api: APIClient, good: str) -> None:
    client_id = funded_wallet(api)
    transaction_id = f"{uuid.uuid4().hex[:8]}{good}"[:128]

    credit = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": transaction_id, "amount": "1.00"},
        format="json",
    )
    read = api.get(f"/api/transactions/{quoted(transaction_id)}")

    assert credit.status_code == 201, credit.content
    assert read.status_code == 200, read.content
    assert read.json()["transaction_id"] == transaction_id


# --- item 13: every answer under /api/ is the JSON error shape --------------------------------


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api/transactions/a%2Fb",
        "/api/transactions/a%2Fb/void",
        "/api/clients/a%2Fb/wallets/USA/USD",
        "/api/" + "x/" * 5000,
    ],
)
def test_an_unknown_api_path_answers_404_in_the_json_error_shape(
    api: APIClient, settings: Any, path: str, debug: bool
) -> None:
    settings.DEBUG = debug

    assert_error(api.get(path), 404, "not_found")


def test_an_over_long_id_in_the_url_answers_400_in_the_json_error_shape(api: APIClient) -> None:
    assert_error(api.get("/api/transactions/" + "a" * 100_000), 400, "validation_error")
    assert_error(api.get(wallet_url("c" * 100_000)), 400, "validation_error")


def test_a_method_the_resource_does_not_have_answers_405_in_the_json_error_shape(
    api: APIClient,
) -> None:
    assert_error(api.put(wallet_url("someone")), 405, "method_not_allowed")


def test_a_body_over_the_size_limit_answers_413_request_too_large_and_moves_nothing(
    api: APIClient, settings: Any
) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)
    body = '{"transaction_id": "t-big", "amount": "1.00", "pad": "%s"}' % ("x" * 3_000_000)

    response = post_credit_body(api, client_id, body=body)

    assert_error(response, 413, "request_too_large")
    assert balance_of(api, client_id) == before


@pytest.mark.parametrize("charset", ["bz2_codec", "zlib_codec", "rot13"])
def test_a_body_in_a_charset_that_is_no_text_encoding_answers_400_malformed_request(
    api: APIClient, charset: str
) -> None:
    client_id = funded_wallet(api)

    response = api.post(
        f"{wallet_url(client_id)}/credits",
        data=b'{"transaction_id": "t-cs", "amount": "1.00"}',
        content_type=f"application/json; charset={charset}",
    )

    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize("debug", [False, True])
def test_a_server_error_under_the_api_answers_500_in_the_json_error_shape(
    api: APIClient, settings: Any, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    settings.DEBUG = debug

    def broken() -> WalletService:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "wallet_service", broken)

    assert_error(api.get(wallet_url("someone")), 500, "internal_error")


def test_pages_outside_the_api_keep_their_html_errors(api: APIClient) -> None:
    response = api.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- item 10: the balance limit over HTTP -----------------------------------------------------


def test_a_credit_past_the_balance_limit_answers_422_balance_limit_exceeded(
    api: APIClient,
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    near_limit = format(Decimal(BALANCE_MINOR_MAX - 10).scaleb(-2), "f")
    first = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": near_limit},
        format="json",
    )
    before = balance_of(api, client_id)

    response = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": "0.11"},
        format="json",
    )

    assert first.status_code == 201, first.content
    assert_error(response, 422, "balance_limit_exceeded")
    assert balance_of(api, client_id) == before == {**before, "credit": near_limit}


def test_an_error_asked_for_as_html_is_still_the_json_error_shape_with_its_code(
    api: APIClient,
) -> None:
    client_id = funded_wallet(api)

    response = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": uuid.uuid4().hex, "amount": "1e2"},
        format="json",
        HTTP_ACCEPT="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    )

    assert_error(response, 400, "invalid_amount")


@pytest.mark.parametrize("stated", ["\r", " ", "\t\n"])
def test_a_whitespace_amount_currency_is_refused_not_taken_as_unstated(
    api: APIClient, stated: str
) -> None:
    response = api.post(
        wallet_url("ws-client") + "/credits",
        {"transaction_id": "ws-1", "amount": "1.00", "currency": stated},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_currency"
    assert api.get(wallet_url("ws-client")).status_code == 404


# --- a field the operation does not take ---------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("credits", {"transaction_id": "t-unknown", "amount": "1.00", "amount_currency": "EUR"}),
        ("debits", {"reference_id": "t-unknown", "amount": "1.00", "ammount": "2.00"}),
    ],
    ids=["credit-misspelt-currency", "debit-misspelt-amount"],
)
def test_a_body_field_the_operation_does_not_take_is_refused_400_and_moves_nothing(
    api: APIClient, operation: str, body: dict[str, str]
) -> None:
    client_id = funded_wallet(api)
    before = balance_of(api, client_id)

    response = api.post(f"{wallet_url(client_id)}/{operation}", body, format="json")

    assert_error(response, 400, "validation_error")
    taken = {"transaction_id", "reference_id", "amount"}
    unknown = next(name for name in body if name not in taken)
    assert list(response.json()["error"]["details"]["fields"]) == [unknown]
    assert balance_of(api, client_id) == before


def test_a_void_body_with_a_field_it_does_not_take_is_refused_400_and_voids_nothing(
    api: APIClient,
) -> None:
    client_id = funded_wallet(api)
    credit = api.post(
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": f"v-{client_id}", "amount": "1.00"},
        format="json",
    )
    assert credit.status_code == 201, credit.content

    response = api.post(
        f"/api/transactions/v-{client_id}/void", {"reason": "typo", "force": True}, format="json"
    )

    assert_error(response, 400, "validation_error")
    assert api.get(f"/api/transactions/v-{client_id}").json()["state"] == "posted"
