"""The migration with a real Celery worker (CI starts one): the mirror task queued by an API
write, a shadow comparison and a reconciliation all run in the worker process, on the same
PostgreSQL test database and MongoDB server as the web side."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from domain.ids import WalletKey
from flags.phases import Phase
from migration.models import ShadowComparison
from migration.outbox import MirrorState
from tests.conftest import token_api_client
from tests.migration.conftest import Stores, enter_phase, installed_stores

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL, reason="no CELERY_BROKER_URL: tasks run eagerly here"
    ),
]
WORKER_WAIT_S = 30.0


@pytest.fixture
def worker_stores(mongo_url: str, wallet_ledger_backend: Any) -> Iterator[Stores]:
    """The stores the worker uses too: MONGO_URL's own database, the test database."""
    client = pymongo.MongoClient(mongo_url)
    database = client.get_default_database(default="wallet").name
    client.drop_database(database)
    with installed_stores(mongo_url, database=database, backend=wallet_ledger_backend) as stores:
        yield stores
    client.drop_database(database)
    client.close()


@pytest.fixture
def api() -> APIClient:
    return token_api_client()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WORKER_WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"the worker did not {what} within {WORKER_WAIT_S} s")


def test_an_api_write_in_dual_write_is_mirrored_by_the_worker(
    worker_stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = WalletKey(f"client-{uuid.uuid4().hex[:8]}", "USA", "USD")
    url = f"/api/clients/{key.client_id}/wallets/USA/USD"

    response = api.post(
        f"{url}/credits", {"transaction_id": uuid.uuid4().hex, "amount": "8.40"}, format="json"
    )

    assert response.status_code == 201
    log = worker_stores.mongo.database.log()
    eventually(
        lambda: log.find_one({"client_id": key.client_id})["mirror_state"] == MirrorState.MIRRORED,
        "mirror the write",
    )
    assert worker_stores.tigerbeetle.get_balance(key).credit_minor == 840


def test_a_sampled_read_is_compared_by_the_worker(worker_stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = WalletKey(f"client-{uuid.uuid4().hex[:8]}", "USA", "USD")
    url = f"/api/clients/{key.client_id}/wallets/USA/USD"
    api.post(f"{url}/credits", {"transaction_id": uuid.uuid4().hex, "amount": "1"}, format="json")

    assert api.get(url).status_code == 200

    eventually(
        lambda: ShadowComparison.objects.filter(client_id=key.client_id).exists(),
        "record the shadow comparison",
    )
    comparison = ShadowComparison.objects.get(client_id=key.client_id)
    assert comparison.outcome == ShadowComparison.Outcome.MATCH


def test_reconciliation_runs_in_the_worker(worker_stores: Stores, api: APIClient) -> None:
    from migration.tasks import reconcile

    enter_phase(Phase.DUAL_WRITE)
    key = WalletKey(f"client-{uuid.uuid4().hex[:8]}", "USA", "USD")
    worker_stores.mongo.add_credit(key, 100, uuid.uuid4().hex)
    worker_stores.mirror().drain()

    result = reconcile.delay("integration test").get(timeout=WORKER_WAIT_S)

    assert (result["checked"], result["matched"], result["mismatched"]) == (1, 1, 0)
