"""Phase 3's TigerBeetle reads against a real server that goes away and comes back: the reads
retry, the breaker opens and MongoDB answers (counted), and once the server is back the
breaker's trial read closes it and TigerBeetle answers again.

The server is this test's own (`wallet_site.local_tigerbeetle`, as `make run` starts one:
TB_BINARY, which CI sets), never the shared one a test run may point TB_ADDRESSES at: this test
stops it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pybreaker
import pytest
from django.conf import settings
from prometheus_client import REGISTRY

from flags.phases import Phase
from ledger.backends.tigerbeetle_client import TigerBeetleBackend
from migration.models import ReadRouteCount
from migration.routing import ReadRetry, read_breaker
from tests.migration.conftest import Stores, enter_phase, installed_stores, new_key, tx
from wallet_site.embedded_mongo import free_loopback_port
from wallet_site.local_tigerbeetle import (
    DATA_FILE_NAME,
    LOCAL_CLUSTER_ID,
    LocalTigerBeetle,
    start_local_tigerbeetle,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TB_BINARY"),
        reason="TB_BINARY is not set: no TigerBeetle server binary to start, stop and restart",
    ),
]

# Each try waits this long for an answer from the stopped server: short, so five failing reads
# of four tries each take about 20 s, yet past the ~0.6 s a new client's first request takes
# (its session's registration). The retry and failure counts are the settings' (3, 5).
REQUEST_TIMEOUT_S = 1.0
BREAKER_RESET_S = 1.0
RETRY_BASE_S = 0.01


class OwnServer:
    """A local single-replica server on a port of its own, stoppable and restartable on the
    same data file and port."""

    def __init__(self, data_dir: Path) -> None:
        self.binary = Path(os.environ["TB_BINARY"])
        self.data_dir = data_dir
        self.port = free_loopback_port()
        self.running: LocalTigerBeetle | None = None

    def start(self) -> str:
        self.running = start_local_tigerbeetle(self.binary, data_dir=self.data_dir, port=self.port)
        return self.running.addresses

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()
        (tmp_path / DATA_FILE_NAME).unlink(missing_ok=True)  # ~1.1 GB


@pytest.fixture
def stores_on_own_server(
    db: None, mongo_url: str, mongo_database_name: str, own_server: OwnServer
) -> Iterator[Stores]:
    addresses = own_server.start()
    backend = TigerBeetleBackend(
        cluster_id=LOCAL_CLUSTER_ID, addresses=addresses, request_timeout_s=REQUEST_TIMEOUT_S
    )
    try:
        with installed_stores(mongo_url, database=mongo_database_name, backend=backend) as stores:
            stores.phased.breaker = read_breaker(
                failures=settings.READ_BREAKER_FAILURES, reset_s=BREAKER_RESET_S
            )
            # No budget: every read of the stopped server tries 1 + 3 times.
            stores.phased.read_retry = ReadRetry(
                retries=settings.TB_READ_RETRY_ATTEMPTS, base_s=RETRY_BASE_S
            )
            yield stores
    finally:
        backend.close()


def read_retries() -> float:
    return REGISTRY.get_sample_value("wallet_read_retries_total") or 0.0


def routes() -> dict[str, int]:
    return {row.route: row.count for row in ReadRouteCount.objects.all()}


def test_reads_retry_then_fall_back_behind_the_open_breaker_and_return_when_the_server_does(
    stores_on_own_server: Stores, own_server: OwnServer
) -> None:
    stores = stores_on_own_server
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 500, tx())  # MongoDB, mirrored to the server at once
    stores.tigerbeetle.subtract_credit(key, 1, tx())  # TigerBeetle alone: 4.99, so it shows
    assert stores.phased.get_balance(key).credit_minor == 499
    assert routes() == {"tigerbeetle": 1}

    own_server.stop()
    retries_before = read_retries()
    for _ in range(settings.READ_BREAKER_FAILURES):
        assert stores.phased.get_balance(key).credit_minor == 500  # MongoDB, after retrying
    assert stores.phased.breaker.current_state == pybreaker.STATE_OPEN
    retried = read_retries() - retries_before
    assert retried == settings.TB_READ_RETRY_ATTEMPTS * settings.READ_BREAKER_FAILURES

    started = time.monotonic()
    assert stores.phased.get_balance(key).credit_minor == 500  # the open breaker: no try
    assert time.monotonic() - started < REQUEST_TIMEOUT_S
    assert read_retries() - retries_before == retried
    assert routes() == {"tigerbeetle": 1, "fallback": settings.READ_BREAKER_FAILURES + 1}

    own_server.start()
    time.sleep(BREAKER_RESET_S)  # then one trial read goes through
    assert stores.phased.get_balance(key).credit_minor == 499
    assert stores.phased.breaker.current_state == pybreaker.STATE_CLOSED
    assert stores.phased.get_balance(key).credit_minor == 499
    assert routes() == {"tigerbeetle": 3, "fallback": settings.READ_BREAKER_FAILURES + 1}


def test_a_read_of_a_stopped_server_falls_back_after_one_try_that_spent_the_retry_budget(
    stores_on_own_server: Stores, own_server: OwnServer
) -> None:
    stores = stores_on_own_server
    # The production shape: the budget (2 s) under the request timeout (5 s), scaled.
    stores.phased.read_retry = replace(stores.phased.read_retry, budget_s=REQUEST_TIMEOUT_S / 2)
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 500, tx())
    stores.tigerbeetle.subtract_credit(key, 1, tx())  # TigerBeetle alone: 4.99
    assert stores.phased.get_balance(key).credit_minor == 499

    own_server.stop()
    retries_before = read_retries()
    started = time.monotonic()
    assert stores.phased.get_balance(key).credit_minor == 500  # MongoDB
    waited_s = time.monotonic() - started

    assert read_retries() == retries_before
    # One request timeout and MongoDB's answer (four tries would take over 4 s).
    assert REQUEST_TIMEOUT_S <= waited_s < 3 * REQUEST_TIMEOUT_S
    assert routes() == {"tigerbeetle": 1, "fallback": 1}
