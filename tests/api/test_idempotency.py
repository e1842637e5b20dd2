"""Idempotency keys as clients expect them, on each store: a write whose answer was lost is
retried with the same id and answers the original (`replayed`: true, nothing applied twice);
the same id with a different body answers 409 with the stored original in
`details.original`, for credits, debits and voids."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from tests.api.test_wallet_api import api, credit, debit, error_code, new_client_id, wallet_url

__all__ = ["api"]  # the fixture: requests served by the store under test


def test_a_credit_sent_twice_answers_the_original_and_credits_once(api: APIClient) -> None:
    client_id, transaction_id = new_client_id(), f"tx-{uuid.uuid4().hex}"

    first = credit(api, client_id, "10.00", transaction_id=transaction_id)
    again = credit(api, client_id, "10.00", transaction_id=transaction_id)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] is True and first.json()["replayed"] is False
    assert again.json()["transaction"] == first.json()["transaction"]
    assert api.get(wallet_url(client_id)).json()["credit"] == "10.00"


def test_a_debit_sent_twice_answers_the_original_and_debits_once(api: APIClient) -> None:
    client_id, reference_id = new_client_id(), f"ref-{uuid.uuid4().hex}"
    credit(api, client_id, "10.00")

    first = debit(api, client_id, "4.00", reference_id=reference_id)
    again = debit(api, client_id, "4.00", reference_id=reference_id)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] is True
    assert again.json()["balance"] == first.json()["balance"]
    assert api.get(wallet_url(client_id)).json()["credit"] == "6.00"


@pytest.mark.parametrize("change", ["amount", "wallet"])
def test_a_credit_id_reused_for_another_credit_answers_409_with_the_stored_original(
    api: APIClient, change: str
) -> None:
    client_id, transaction_id = new_client_id(), f"tx-{uuid.uuid4().hex}"
    original = credit(api, client_id, "10.00", transaction_id=transaction_id).json()

    other_client = new_client_id() if change == "wallet" else client_id
    amount = "99.00" if change == "amount" else "10.00"
    conflict = credit(api, other_client, amount, transaction_id=transaction_id)

    assert conflict.status_code == 409
    assert error_code(conflict) == "idempotency_conflict"
    assert conflict.json()["error"]["details"]["original"] == original["transaction"]
    assert api.get(wallet_url(client_id)).json()["credit"] == "10.00"


def test_a_debit_id_reused_for_another_debit_answers_409_with_the_stored_original(
    api: APIClient,
) -> None:
    client_id, reference_id = new_client_id(), f"ref-{uuid.uuid4().hex}"
    credit(api, client_id, "10.00")
    original = debit(api, client_id, "4.00", reference_id=reference_id).json()

    conflict = debit(api, client_id, "5.00", reference_id=reference_id)

    assert conflict.status_code == 409
    assert error_code(conflict) == "idempotency_conflict"
    stored = conflict.json()["error"]["details"]["original"]
    assert stored == original["transaction"] and stored["amount"] == "4.00"
    assert api.get(wallet_url(client_id)).json()["credit"] == "6.00"


def test_a_void_sent_again_answers_409_already_voided_with_the_void_it_made(
    api: APIClient,
) -> None:
    client_id, transaction_id = new_client_id(), f"tx-{uuid.uuid4().hex}"
    credit(api, client_id, "10.00", transaction_id=transaction_id)
    void_url = f"/api/transactions/{transaction_id}/void"
    first = api.post(void_url, {"reason": "duplicate charge"}, format="json")

    again = api.post(void_url, {"reason": "another reason"}, format="json")

    assert first.status_code == 200
    assert again.status_code == 409 and error_code(again) == "already_voided"
    stored = again.json()["error"]["details"]["original"]
    assert stored["transaction_id"] == transaction_id
    assert stored["void_reason"] == "duplicate charge"
    assert stored["voided_at"] == first.json()["transaction"]["voided_at"]
    assert api.get(wallet_url(client_id)).json()["credit"] == "0.00"


def test_the_schema_documents_the_409_and_its_stored_original(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    for path, method in (
        ("/api/clients/{client_id}/wallets/{country}/{currency}/credits", "post"),
        ("/api/clients/{client_id}/wallets/{country}/{currency}/debits", "post"),
        ("/api/transactions/{transaction_id}/void", "post"),
    ):
        conflict = schema["paths"][path][method]["responses"]["409"]
        error = conflict["content"]["application/json"]["schema"]["properties"]["error"]
        original = error["properties"]["details"]["properties"]["original"]
        assert original["allOf"] == [{"$ref": "#/components/schemas/Transaction"}]
