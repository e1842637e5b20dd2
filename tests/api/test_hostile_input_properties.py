"""Generated hostile input over every endpoint and every field (hypothesis, a few hundred
requests per store): never a 500, always the JSON error shape with a documented code, and
no money moves. Each request breaks exactly one field and keeps the others valid, so the
only right answer is a refusal."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from api import views
from domain.countries import UnknownCountry, normalize_country
from domain.money import MoneyError, normalize_currency
from domain.wallets import WalletStore
from ledger.service import WalletService
from ledger.stores.mongo_store import MongoWalletStore
from registry.models import WalletAccount, WalletTransfer
from tests.conftest import token_api_client

# Every code README's REST API section documents.
DOCUMENTED_CODES = {
    "validation_error",
    "invalid_amount",
    "unknown_currency",
    "unknown_country",
    "malformed_request",
    "not_authenticated",
    "authentication_failed",
    "not_found",
    "method_not_allowed",
    "request_too_large",
    "unsupported_media_type",
    "wallet_not_found",
    "transaction_not_found",
    "idempotency_conflict",
    "already_voided",
    "void_would_overdraw",
    "insufficient_funds",
    "cross_currency",
    "balance_limit_exceeded",
    "store_unavailable",
    "writes_paused",
}
PLAIN_POSITIVE_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _not_a_country(text: str) -> bool:
    try:
        normalize_country(text)
    except (UnknownCountry, LookupError, ValueError):
        return True
    return False


def _not_a_currency(text: str) -> bool:
    try:
        normalize_currency(text)
    except MoneyError:
        return True
    return False


def _is_valid_id(text: str) -> bool:
    from domain import errors
    from ledger.service import checked_id

    try:
        checked_id(text, field="id")
    except errors.ValidationFailed:
        return False
    return True


# Characters a URL can carry (no lone surrogates: they have no UTF-8 encoding).
url_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
forbidden_character = st.sampled_from(
    ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\u200b", "\u202e", "\ufeff", "\u2028", "/"]
)
bad_id_nonempty = st.one_of(
    st.builds(lambda a, c, b: a + c + b, url_text, forbidden_character, url_text),
    st.text(st.sampled_from(" \t\u00a0\u3000"), min_size=1, max_size=3),
    st.builds(lambda t: " " + t, url_text),
    st.builds(lambda t: t + "\u00a0", url_text),
    st.integers(129, 400).map(lambda n: "i" * n),
)
bad_id_text = st.one_of(st.just(""), bad_id_nonempty)
json_non_string = st.one_of(
    st.booleans(),
    st.integers(),
    st.lists(st.integers(), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
)
bad_body_id = st.one_of(bad_id_text, st.none(), json_non_string)
bad_amount = st.one_of(
    st.text(max_size=30).filter(lambda t: not PLAIN_POSITIVE_DECIMAL.fullmatch(t)),
    st.sampled_from(["0", "0.00", "-1", "-0.01", "0.001", "1e2", "1_0", "+1", "1" + "0" * 30]),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.integers(max_value=0),
)
bad_country = url_text.filter(_not_a_country)
bad_currency = url_text.filter(lambda t: t != "" and _not_a_currency(t))
bad_reason = st.one_of(
    st.just(""),
    st.text(st.sampled_from(" \t\n"), min_size=1, max_size=3),
    st.integers(1001, 1500).map(lambda n: "r" * n),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
bad_raw_body = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
    st.sampled_from(
        [b"[" * 50_000 + b"]" * 50_000, b'{"amount": NaN}', b"[]", b"7", b'"x"', b"null"]
    ),
).filter(lambda raw: not _is_json_object(raw))


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


class Target:
    """A funded wallet and one of its credits: what a hostile request must leave alone."""

    def __init__(self, api: APIClient) -> None:
        self.client_id = f"client-{uuid.uuid4().hex[:10]}"
        self.transaction_id = f"tx-{uuid.uuid4().hex}"
        response = api.post(
            f"{self.wallet()}/credits",
            {"transaction_id": self.transaction_id, "amount": "10.00"},
            format="json",
        )
        assert response.status_code == 201, response.content

    def wallet(
        self, *, client_id: str | None = None, country: str = "USA", currency: str = "USD"
    ) -> str:
        return (
            f"/api/clients/{quote(self.client_id if client_id is None else client_id, safe='')}"
            f"/wallets/{quote(country, safe='')}/{quote(currency, safe='')}"
        )


def hostile_request(target: Target, data: st.DataObject) -> tuple[str, str, Any, str | None]:
    """(method, url, body, raw content type) breaking exactly one field."""
    credit_body = {"transaction_id": f"tx-{uuid.uuid4().hex}", "amount": "1.00"}
    debit_body = {"reference_id": f"ref-{uuid.uuid4().hex}", "amount": "1.00"}
    place = data.draw(
        st.sampled_from(
            [
                "path client id",
                "path country",
                "path currency",
                "query issuer",
                "all balances client id",
                "credit field",
                "debit field",
                "credit raw body",
                "transaction path id",
                "void path id",
                "void reason",
            ]
        ),
        label="place",
    )
    write = data.draw(st.sampled_from(["balance", "credits", "debits"]), label="endpoint")
    method, suffix, body = {
        "balance": ("get", "", None),
        "credits": ("post", "/credits", credit_body),
        "debits": ("post", "/debits", debit_body),
    }[write]
    if place == "path client id":
        return method, target.wallet(client_id=data.draw(bad_id_text)) + suffix, body, None
    if place == "path country":
        return method, target.wallet(country=data.draw(bad_country)) + suffix, body, None
    if place == "path currency":
        return method, target.wallet(currency=data.draw(bad_currency)) + suffix, body, None
    if place == "query issuer":
        issuer = data.draw(bad_id_nonempty)
        return "get", f"{target.wallet()}?issuer={quote(issuer, safe='')}", None, None
    if place == "all balances client id":
        client_id = data.draw(bad_id_nonempty)
        return "get", f"/api/clients/{quote(client_id, safe='')}/wallets", None, None
    if place in ("credit field", "debit field"):
        body = dict(credit_body if place == "credit field" else debit_body)
        id_field = "transaction_id" if place == "credit field" else "reference_id"
        field = data.draw(st.sampled_from([id_field, "amount", "issuer", "currency"]))
        body[field] = data.draw(
            {
                id_field: bad_body_id,
                "amount": bad_amount,
                "issuer": st.one_of(bad_id_nonempty, json_non_string),
                "currency": st.one_of(bad_currency, st.lists(st.integers(), max_size=1)),
            }[field]
        )
        suffix = "/credits" if place == "credit field" else "/debits"
        return "post", target.wallet() + suffix, body, None
    if place == "credit raw body":
        return "post", f"{target.wallet()}/credits", data.draw(bad_raw_body), "application/json"
    if place == "transaction path id":
        transaction_id = data.draw(bad_id_nonempty)
        return "get", f"/api/transactions/{quote(transaction_id, safe='')}", None, None
    if place == "void path id":
        transaction_id = data.draw(bad_id_nonempty)
        url = f"/api/transactions/{quote(transaction_id, safe='')}/void"
        return "post", url, {"reason": "hostile"}, None
    return (
        "post",
        f"/api/transactions/{target.transaction_id}/void",
        {"reason": data.draw(bad_reason)},
        None,
    )


def money_state(store: WalletStore) -> tuple[int, int]:
    """How many wallets and posted writes the store holds, whoever they belong to."""
    if isinstance(store, MongoWalletStore):
        database = store.database
        wallets, log = database.wallets(), database.log()
        return wallets.count_documents({}), log.count_documents({})
    return WalletAccount.objects.count(), WalletTransfer.objects.count()


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    client: APIClient = token_api_client()
    client.raise_request_exception = False
    return client


@pytest.fixture
def target(api: APIClient) -> Target:
    """One funded wallet for every generated request of the run (each must leave it alone)."""
    return Target(api)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_hostile_requests_are_refused_in_the_json_error_shape_and_move_no_money(
    api: APIClient, wallet_store: WalletStore, target: Target, data: st.DataObject
) -> None:
    balance_before = api.get(target.wallet()).json()
    state_before = money_state(wallet_store)
    method, url, body, raw_content_type = hostile_request(target, data)

    if raw_content_type is not None:
        response = api.post(url, data=body, content_type=raw_content_type)
    elif method == "get":
        response = api.get(url)
    else:
        response = api.post(url, body, format="json")

    assert 400 <= response.status_code < 500, (url, body, response.status_code, response.content)
    assert response["Content-Type"] == "application/json", (url, response.content)
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] in DOCUMENTED_CODES, error
    assert api.get(target.wallet()).json() == balance_before
    assert money_state(wallet_store) == state_before
    transaction = api.get(f"/api/transactions/{target.transaction_id}").json()
    assert transaction["state"] == "posted"
