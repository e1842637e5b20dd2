"""A live deployment for the contract tests: gunicorn on the test database, a MongoDB database
of its own and a ledger id namespace of its own (the real cluster keeps what every run wrote),
one store pinned (WALLET_STORE), and a superuser's API token."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymongo
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from tests.migration.test_phase_change_across_processes import (
    database_url_of_the_test_database,
    environment_with_eager_tasks,
    with_database,
)
from wallet_site.embedded_mongo import free_loopback_port

BASE_DIR = Path(settings.BASE_DIR)
START_WAIT_S = 30.0


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    token: str
    store: str


@contextlib.contextmanager
def live_server(*, store: str, mongo_url: str, log_path: Path) -> Iterator[LiveServer]:
    """gunicorn (2 workers) serving the API with `store` pinned; Celery tasks eager."""
    user = get_user_model().objects.create_superuser(f"contract-{uuid.uuid4().hex[:8]}")
    _, token = AuthToken.objects.create(user=user)
    database = f"wallet_contract_{uuid.uuid4().hex[:12]}"
    env = environment_with_eager_tasks()
    env.update(
        DATABASE_URL=database_url_of_the_test_database(),
        MONGO_URL=with_database(mongo_url, database=database),
        WALLET_STORE=store,
        TB_ID_NAMESPACE=f"contract-{uuid.uuid4().hex}",
        DJANGO_DEBUG="false",
        API_SCHEMA_PUBLIC="true",
        API_THROTTLE_RATE="",
        # schemathesis' ignored_auth check sends refused tokens to every operation: counted
        # per address, they would throttle its own later requests (the limit has its tests in
        # tests/api/test_failed_token_throttle.py).
        API_AUTH_FAILURE_LIMIT="0",
        LOG_LEVEL="WARNING",
    )
    port = free_loopback_port()
    command = [sys.executable, "-m", "gunicorn", "wallet_site.wsgi", "-b", f"127.0.0.1:{port}"]
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            # 150 s: a batch of 8189 items on the MongoDB store takes some 40 s (schemathesis.toml).
            [*command, "-w", "2", "--timeout", "150"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=log,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                requests.get(f"{base_url}/healthz", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    log_tail = log_path.read_text()[-2000:]
                    raise AssertionError(f"gunicorn did not start: {log_tail}") from None
                time.sleep(0.2)
        yield LiveServer(base_url=base_url, token=str(token), store=store)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        client = pymongo.MongoClient(mongo_url)
        client.drop_database(database)
        client.close()
