"""/healthz and /readyz, as a load balancer or an orchestrator probes them: no credentials,
any Host header, JSON; /readyz checks what the process needs in the current phase, each check
bounded, and reveals no secret."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from flags.phases import Phase
from ledger.backends.base import LedgerBackend
from tests.migration.conftest import enter_phase, installed_stores
from wallet_site.embedded_mongo import free_loopback_port

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_CACHE = "wallet_site.cache.DegradingRedisCache"
PROBE_HOST = "10.1.2.3:8000"  # a pod's address, as a kubelet's probe names it


# The wallet stores' checks; a cache and a broker are checked too where settings name them (CI).
STORE_CHECKS = {"database", "mongodb", "ledger"}


def store_checks(body: dict) -> dict:
    return {name: check for name, check in body["checks"].items() if name in STORE_CHECKS}


def probe(path: str) -> tuple[int, dict]:
    response = Client().get(path, HTTP_HOST=PROBE_HOST)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response.status_code, response.json()


@pytest.fixture
def deployment(mongo_url: str, mongo_database_name: str, wallet_ledger_backend: LedgerBackend):
    with installed_stores(
        mongo_url, database=mongo_database_name, backend=wallet_ledger_backend
    ) as stores:
        yield stores


def test_healthz_answers_without_credentials_or_a_known_host_even_with_mongodb_gone(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    dead_url = f"mongodb://127.0.0.1:{free_loopback_port()}/wallet?directConnection=true"
    with installed_stores(dead_url, database="wallet", backend=wallet_ledger_backend):
        status, body = probe("/healthz")

    assert (status, body) == (200, {"status": "ok"})


def test_readyz_in_phase_0_checks_the_database_and_mongodb_with_their_latency(
    deployment: object,
) -> None:
    status, body = probe("/readyz")

    assert status == 200
    assert body["status"] == "ready" and body["phase"] == 0
    assert set(store_checks(body)) == {"database", "mongodb"}
    for check in store_checks(body).values():
        assert check["state"] == "up" and check["required"] is True
        assert isinstance(check["latency_ms"], float | int) and check["latency_ms"] >= 0


@pytest.mark.parametrize("phase", [Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.READ_CUTOVER])
def test_readyz_from_phase_1_to_3_needs_mongodb_and_shows_the_ledger_as_not_required(
    deployment: object, phase: Phase
) -> None:
    enter_phase(phase)

    status, body = probe("/readyz")

    assert status == 200 and body["phase"] == phase
    assert {name: c["required"] for name, c in store_checks(body).items()} == {
        "database": True,
        "mongodb": True,
        "ledger": False,  # writes go on into the outbox, phase 3's reads fall back
    }
    assert all(check["state"] == "up" for check in body["checks"].values())


def test_readyz_in_phase_4_needs_the_ledger_and_shows_mongodb_as_not_required(
    deployment: object,
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)

    status, body = probe("/readyz")

    assert status == 200 and body["phase"] == 4
    assert body["checks"]["ledger"]["required"] is True
    assert body["checks"]["mongodb"]["required"] is False


def test_readyz_with_a_pinned_store_needs_only_that_store(
    mongo_url: str, mongo_database_name: str, wallet_ledger_backend: LedgerBackend
) -> None:
    with (
        override_settings(WALLET_STORE="tigerbeetle"),
        installed_stores(mongo_url, database=mongo_database_name, backend=wallet_ledger_backend),
    ):
        status, body = probe("/readyz")

    assert status == 200 and body["wallet_store"] == "tigerbeetle"
    assert set(store_checks(body)) == {"database", "ledger"}


def test_readyz_answers_503_naming_mongodb_when_it_does_not_answer_and_shows_no_url(
    wallet_ledger_backend: LedgerBackend,
) -> None:
    port = free_loopback_port()
    dead_url = f"mongodb://wallet:s3cret@127.0.0.1:{port}/wallet?directConnection=true"

    with installed_stores(dead_url, database="wallet", backend=wallet_ledger_backend):
        status, body = probe("/readyz")

    assert status == 503 and body["status"] == "unready"
    assert body["checks"]["mongodb"]["state"] in ("down", "timeout")
    assert body["checks"]["database"]["state"] == "up"
    text = str(body)
    assert str(port) not in text and "s3cret" not in text and "127.0.0.1" not in text


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that takes connections and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_readyz_answers_within_its_bound_when_a_dependency_hangs(
    silent_server: int, wallet_ledger_backend: LedgerBackend
) -> None:
    hanging_url = f"mongodb://127.0.0.1:{silent_server}/wallet?directConnection=true"

    with (
        override_settings(READINESS_CHECK_TIMEOUT_S=0.5),
        installed_stores(hanging_url, database="wallet", backend=wallet_ledger_backend),
    ):
        started = time.monotonic()
        status, body = probe("/readyz")
        elapsed_s = time.monotonic() - started

    assert elapsed_s < 2.0
    assert status == 503 and body["checks"]["mongodb"]["state"] in ("timeout", "down")


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of the test's own, on a free port (the machine's is never stopped)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on this machine")
    port = free_loopback_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}", server
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_readyz_reports_the_cache_and_the_broker_down_but_stays_ready_when_their_redis_stops(
    deployment: object, own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, server = own_redis
    redis_settings = override_settings(
        CACHES={"default": {"BACKEND": REDIS_CACHE, "LOCATION": f"{url}/2"}},
        CELERY_BROKER_URL=f"{url}/1",
    )
    with redis_settings:
        status_up, body_up = probe("/readyz")
        server.terminate()
        server.wait(timeout=10)
        status_down, body_down = probe("/readyz")

    assert status_up == 200
    assert body_up["checks"]["cache"]["state"] == "up"
    assert body_up["checks"]["celery_broker"]["state"] == "up"
    assert status_down == 200
    assert body_down["checks"]["cache"]["state"] == "down"
    assert body_down["checks"]["cache"]["required"] is False
    assert body_down["checks"]["celery_broker"]["state"] == "down"
    assert body_down["checks"]["celery_broker"]["required"] is False
    assert body_down["checks"]["mongodb"]["state"] == "up"
    assert url.split("//")[1] not in str(body_down)
