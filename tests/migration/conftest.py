"""Fixtures for the migration: both stores on a fresh MongoDB database and the test ledger,
installed as the process's stores so the service, the API and (eager) Celery tasks share them."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pymongo
import pytest
from rest_framework.test import APIClient

from domain.ids import WalletKey
from flags.audit import apply_state
from flags.phases import Phase, state_for_phase
from ledger.backends.base import LedgerBackend
from ledger.batches import LedgerBatches
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from migration.legacy_scan import LegacyScan
from migration.mirror import Mirror
from migration.outbox import MirrorOutbox
from migration.routing import PhasedWalletStore, ShadowEnqueuer
from migration.runtime import Runtime, install_process_runtime
from tests.conftest import ledger_scope, token_api_client
from wallet_site import wiring
from wallet_site.wiring import build_runtime


@dataclass
class Stores:
    """The test's process runtime, by the names the migration's tests use."""

    runtime: Runtime

    @property
    def mongo(self) -> MongoWalletStore:
        return self.runtime.mongo

    @property
    def tigerbeetle(self) -> TigerBeetleWalletStore:
        return self.runtime.tigerbeetle

    @property
    def phased(self) -> PhasedWalletStore:
        return self.runtime.phased

    @property
    def outbox(self) -> MirrorOutbox:
        return self.runtime.outbox

    @property
    def scan(self) -> LegacyScan:
        return self.runtime.legacy

    @property
    def batches(self) -> LedgerBatches:
        """The jobs' batch port over the TigerBeetle store's backend (as the runtime makes it)."""
        return self.runtime.batches

    def mirror(self) -> Mirror:
        return self.runtime.mirror()


@contextlib.contextmanager
def installed_stores(mongo_url: str, *, database: str, backend: LedgerBackend) -> Iterator[Stores]:
    """A process runtime on the test's MongoDB database and ledger backend, in the test's
    ledger scope, installed for the service, the API, the admin and (eager) tasks alike."""
    runtime = build_runtime(
        scope=ledger_scope(),
        mongo_database=MongoDatabase(mongo_url, name=database),
        backend=backend,
    )
    previous = install_process_runtime(runtime)
    try:
        yield Stores(runtime)
    finally:
        install_process_runtime(previous)
        runtime.close()


@pytest.fixture(autouse=True)
def _tasks_in_process() -> Iterator[None]:
    """These tests check the migration's logic with tasks run in-process, on the test's own
    MongoDB database and uncommitted test transaction; the same flows on a real worker are
    tests/integration/test_migration_worker.py."""
    from wallet_site.celery import app

    was_eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = was_eager


@pytest.fixture
def stores(
    db: None, mongo_url: str, mongo_database_name: str, wallet_ledger_backend: LedgerBackend
) -> Iterator[Stores]:
    with installed_stores(
        mongo_url, database=mongo_database_name, backend=wallet_ledger_backend
    ) as installed:
        yield installed


@pytest.fixture
def committed_stores(
    transactional_db: None,
    mongo_url: str,
    mongo_database_name: str,
    wallet_ledger_backend: LedgerBackend,
) -> Iterator[Stores]:
    """The same, with real commits: for tests with other processes or threads."""
    with installed_stores(
        mongo_url, database=mongo_database_name, backend=wallet_ledger_backend
    ) as installed:
        yield installed


@pytest.fixture
def criteria_not_awaited(settings: Any) -> None:
    """For tests of what a phase step does rather than of its gates
    (tests/migration/test_phase_gates.py): no consecutive days of a criterion are required
    (`MIGRATION_CRITERION_DAYS=0`, a documented setting); every other gate stays."""
    settings.MIGRATION_CRITERION_DAYS = 0


@pytest.fixture
def steps_without_four_eyes(settings: Any) -> None:
    """For walks through the phases that test what each step does to balances and history
    rather than who approves it (tests/backoffice/test_phase_approval.py): a step into or
    out of phase 4 is taken at once (`FOUR_EYES_PHASE_CHANGES` off, a documented setting)."""
    settings.FOUR_EYES_PHASE_CHANGES = False


@pytest.fixture
def rollout_in_one_step(settings: Any) -> None:
    """For walks through the phases: the read rollout may go from 0 to 100 % at once
    (`READ_ROLLOUT_STEPS=100`, a documented setting)."""
    settings.READ_ROLLOUT_STEPS = (Decimal(100),)


def enter_phase(phase: Phase, *, rollout_percent: int = 100, shadow_percent: int = 100) -> None:
    apply_state(
        state_for_phase(
            phase, shadow_percent=Decimal(shadow_percent), rollout_percent=Decimal(rollout_percent)
        ),
        actor="test",
    )


@pytest.fixture
def api(db: None) -> APIClient:
    return token_api_client()


def new_key(currency: str = "USD") -> WalletKey:
    return WalletKey(
        client_id=f"client-{uuid.uuid4().hex[:10]}", country="USA", currency=currency, issuer=None
    )


def tx() -> str:
    return f"tx-{uuid.uuid4().hex}"


def legacy_wallet(
    stores: Stores,
    key: WalletKey,
    *,
    credit_minor: int,
    debit_minor: int,
    historical_credit_minor: int | None = None,
    created_at: Any = None,
) -> None:
    """A wallet as the legacy system left it: a balance document, no transaction log."""
    from datetime import UTC, datetime, timedelta

    from ledger.stores.mongo_database import WALLETS
    from ledger.stores.mongo_documents import decimal128

    historical = credit_minor + debit_minor
    if historical_credit_minor is not None:
        historical = historical_credit_minor
    stores.mongo.database.wallets().insert_one(
        {
            "client_id": key.client_id,
            "country": key.country,
            "currency": key.currency,
            "issuer_type_identifier": key.issuer or "",
            "credit": decimal128(credit_minor, key.currency),
            "debit": decimal128(debit_minor, key.currency),
            "historical_credit": decimal128(historical, key.currency),
            "created_at": created_at or datetime.now(UTC) - timedelta(days=400),
        }
    )
    assert WALLETS


@pytest.fixture
def mongo_admin(mongo_url: str) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    """An admin client of the test's MongoDB server, for its failpoints (off again after)."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    yield client
    client.admin.command("configureFailPoint", "failCommand", mode="off")
    client.close()


def assert_stores_agree(stores: Stores, keys: list[WalletKey]) -> None:
    for key in keys:
        assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key), key


def phased_over(
    stores: Stores,
    *,
    enqueue_mirror: Callable[[WalletKey], None] = wiring.enqueue_mirror,
    enqueue_shadow: ShadowEnqueuer = wiring.enqueue_shadow,
) -> PhasedWalletStore:
    """Another phased store over the test's stores, queueing what it is told to (a mirror
    that lags, a shadow read that is never compared)."""
    return PhasedWalletStore(
        stores.mongo,
        stores.tigerbeetle,
        outbox=stores.outbox,
        breaker=stores.phased.breaker,
        read_retry=stores.phased.read_retry,
        enqueue_mirror=enqueue_mirror,
        enqueue_shadow=enqueue_shadow,
    )


@pytest.fixture
def alert_webhook(settings: Any) -> Iterator[list[dict[str, Any]]]:
    """A real HTTP server on loopback as ALERT_WEBHOOK_URL: the JSON bodies it received, in
    order (each POST is answered before the alert's sender goes on). The back-office's base
    URL is http://backoffice.test, so links are predictable."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/alerts"
    settings.BACKOFFICE_BASE_URL = "http://backoffice.test"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
