"""The API's published contract and its behaviour when a store is down."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api import views
from ledger.service import WalletService
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from migration.outbox import LOG_MARKS
from tests.conftest import token_api_client
from wallet_site.embedded_mongo import free_loopback_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return token_api_client()


def test_the_openapi_schema_lists_the_five_operations_and_their_errors(api: APIClient) -> None:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    operations = {
        op["operationId"]: op for path in schema["paths"].values() for op in path.values()
    }
    assert {
        "add_credit",
        "subtract_credit",
        "get_balance",
        "get_balances",
        "void_transaction",
        "get_transaction",
    } <= operations.keys()
    assert {"400", "409", "422", "503"} <= operations["subtract_credit"]["responses"].keys()
    assert "insufficient_funds" in operations["subtract_credit"]["responses"]["422"]["description"]


def test_the_schema_ui_is_served_without_a_cdn(api: APIClient) -> None:
    response = api.get("/api/schema/ui/")

    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content and b"unpkg.com" not in response.content


def test_a_store_that_does_not_answer_gives_503_store_unavailable(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = MongoWalletStore(
        MongoDatabase(
            f"mongodb://127.0.0.1:{free_loopback_port()}/wallet?directConnection=true",
            timeout_s=0.3,
        ),
        marks=LOG_MARKS,
    )
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(dead))

    response = api.get("/api/clients/c-1/wallets/USA/USD")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
