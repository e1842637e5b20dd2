"""A phase change reaches every process before it completes: the app runs under gunicorn with
several workers (each with its own local-memory cache on the embedded default), the phase is
changed with `manage.py migration_phase` from another process (an operator's shell), and
clients keep writing credits through the HTTP API the whole time, retrying 503 `writes_paused`
with the same id.

Every credit that started after a change completed must have gone where the new phase writes
(MongoDB in phases 0-3, TigerBeetle only in phase 4), entering phase 4 must succeed under this
traffic, and every acknowledged credit must be in the balance the API answers at the end.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pymongo
import pytest
import requests
from django.conf import settings
from django.db import connection

from domain.errors import TransactionNotFound
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_store import MongoWalletStore
from migration.outbox import LOG_MARKS
from tests.conftest import api_token
from wallet_site.embedded_mongo import free_loopback_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(settings.BASE_DIR)
WORKERS = 3
CLIENTS = 4
WALLETS = 6
CREDIT = "1.00"
CREDIT_MINOR = 100
WRITES_PER_PHASE = 12
STEP_WAIT_S = 20.0
COMMAND_TIMEOUT_S = 60.0
RETRY_DEADLINE_S = 30.0
# 0 -> 1 -> backfill -> 2 -> 3 -> 4 -> 3 -> 2 -> 1 -> 0: each command, and the phase every
# write started after it must be routed by (None: the backfill, no phase change).
WALK: list[tuple[list[str], int | None]] = [
    (["migration_phase", "1"], 1),
    (["backfill", "--no-progress"], None),
    (["migration_phase", "2", "--shadow", "50"], 2),
    (["migration_phase", "3", "--rollout", "100"], 3),
    (["migration_phase", "4"], 4),
    (["migration_phase", "3"], 3),
    (["migration_phase", "2", "--shadow", "50"], 2),
    (["migration_phase", "1"], 1),
    (["migration_phase", "0"], 0),
]


def database_url_of_the_test_database() -> str:
    """DATABASE_URL for the test database this test writes to (pytest-django's)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def environment_with_eager_tasks() -> dict[str, str]:
    """This process's environment for a server it starts: without the broker, the result
    backend and the metrics directory, so its Celery tasks run eagerly in its own workers."""
    left_out = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PROMETHEUS_MULTIPROC_DIR")
    return {name: value for name, value in os.environ.items() if name not in left_out}


def with_database(mongo_url: str, *, database: str) -> str:
    parts = urlsplit(mongo_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


# The operator's shell: a process of its own that runs each management command it is sent
# (one Django start-up for the whole walk) and answers one line per command.
OPERATOR_SCRIPT = """
import sys
from io import StringIO
from django.core.management import call_command
for line in sys.stdin:
    out = StringIO()
    try:
        call_command(*line.split(), stdout=out, stderr=out)
    except Exception as exc:
        print("refused", repr(exc).replace(chr(10), " "), flush=True)
    else:
        print("ok", out.getvalue().replace(chr(10), " | "), flush=True)
"""


@dataclass
class Operator:
    process: subprocess.Popen[str]
    log_path: Path

    def run(self, *args: str) -> str:
        """Run `manage.py ARGS` in the operator's process; its one-line answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join(args) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], COMMAND_TIMEOUT_S)
        assert ready, f"{' '.join(args)}: no answer in {COMMAND_TIMEOUT_S} s"
        answer = self.process.stdout.readline()
        assert answer, f"the operator's shell died: {self.log_path.read_text()[-2000:]}"
        return answer.strip()


@dataclass
class Deployment:
    base_url: str
    operator: Operator
    mongo: MongoWalletStore  # the deployment's MongoDB database, to see where writes went


@pytest.fixture
def deployment(mongo_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """gunicorn with several workers on the test database and a fresh MongoDB database;
    Celery tasks run eagerly in each worker (no broker), as on the embedded default."""
    database = f"wallet_test_{uuid.uuid4().hex[:12]}"
    env = environment_with_eager_tasks()
    env.update(
        DATABASE_URL=database_url_of_the_test_database(),
        MONGO_URL=with_database(mongo_url, database=database),
        WALLET_STORE="phased",
        # The walk, not the gates (tests/migration/test_phase_gates.py): no criterion's days
        # are awaited and the read rollout goes to 100 % in one step.
        MIGRATION_CRITERION_DAYS="0",
        READ_ROLLOUT_STEPS="100",
        # Nor who approves: entering and leaving phase 4 are taken at once (four eyes:
        # tests/backoffice/test_phase_approval.py).
        FOUR_EYES_PHASE_CHANGES="false",
        DJANGO_DEBUG="false",
        LOG_LEVEL="WARNING",
    )
    port = free_loopback_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "wallet_site.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(WORKERS),
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    operator_log = tmp_path / "operator.log"
    with open(operator_log, "w") as log_file:
        operator = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", OPERATOR_SCRIPT],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base_url}/api/ping", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        mongo = MongoWalletStore(MongoDatabase(env["MONGO_URL"]), marks=LOG_MARKS)
        yield Deployment(base_url, Operator(operator, operator_log), mongo)
    finally:
        for process in (operator, server):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        client = pymongo.MongoClient(mongo_url)
        client.drop_database(database)
        client.close()


@dataclass
class Clients:
    """Threads writing credits until stopped; each write retried with its id until it is
    acknowledged (201, or 200 for a replay)."""

    base_url: str
    token: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acknowledged: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    started_at: dict[str, float] = field(default_factory=dict)  # by acknowledged id
    paused_answers: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wallet_url(self, wallet: int) -> str:
        return f"{self.base_url}/api/clients/walk-{self.run}-{wallet}/wallets/USA/USD"

    def count(self) -> int:
        with self.lock:
            return sum(len(ids) for ids in self.acknowledged.values())

    def write(self, session: requests.Session, wallet: int) -> None:
        transaction_id = uuid.uuid4().hex
        started_at = time.monotonic()
        deadline = started_at + RETRY_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                response = session.post(
                    f"{self.wallet_url(wallet)}/credits",
                    json={"transaction_id": transaction_id, "amount": CREDIT},
                    timeout=30,
                )
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if response.status_code in (200, 201):
                with self.lock:
                    self.acknowledged[self.wallet_url(wallet)].append(transaction_id)
                    self.started_at[transaction_id] = started_at
                return
            try:
                code = response.json().get("error", {}).get("code")
            except ValueError:
                code = None
            if response.status_code == 503 and code in ("writes_paused", "store_unavailable"):
                with self.lock:
                    self.paused_answers += code == "writes_paused"
                time.sleep(0.05)
                continue
            with self.lock:
                self.failures.append(f"{response.status_code} {response.text[:300]}")
            return
        with self.lock:
            self.failures.append(f"credit {transaction_id} not acknowledged in {RETRY_DEADLINE_S}s")

    def loop(self, number: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.token}"
        writes = 0
        while not self.stop.is_set():
            self.write(session, (number + writes) % WALLETS)
            writes += 1

    def started_after(self, moment: float) -> list[str]:
        with self.lock:
            return [tid for tid, started in self.started_at.items() if started > moment]

    def wait_for(self, writes: int) -> None:
        target = self.count() + writes
        deadline = time.monotonic() + STEP_WAIT_S
        while self.count() < target:
            assert time.monotonic() < deadline, f"writes stalled: {self.failures[:3]}"
            time.sleep(0.05)


def assert_routed_by(phase: int, transaction_ids: list[str], mongo: MongoWalletStore) -> None:
    """Every write that started after the change completed went where `phase` writes:
    MongoDB in phases 0-3, TigerBeetle only in phase 4 (so MongoDB does not know it)."""
    assert transaction_ids
    in_mongo = []
    for transaction_id in transaction_ids:
        try:
            mongo.get_transaction(transaction_id)
            in_mongo.append(transaction_id)
        except TransactionNotFound:
            pass
    expected = [] if phase == 4 else transaction_ids
    assert sorted(in_mongo) == sorted(expected), f"writes not routed by phase {phase}"


def test_every_process_follows_the_walk_and_no_acknowledged_credit_is_lost(
    deployment: Deployment,
) -> None:
    clients = Clients(deployment.base_url, api_token())
    threads = [threading.Thread(target=clients.loop, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        clients.wait_for(WRITES_PER_PHASE)  # every worker has read phase 0 by now
        for step, phase in WALK:
            answer = deployment.operator.run(*step)
            changed_at = time.monotonic()
            assert answer.startswith("ok"), f"{' '.join(step)}: {answer}"
            clients.wait_for(WRITES_PER_PHASE)  # writes go on after the change
            if phase is not None:
                assert_routed_by(phase, clients.started_after(changed_at), deployment.mongo)
    finally:
        clients.stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert clients.failures == []
    session = requests.Session()
    session.headers["Authorization"] = f"Token {clients.token}"
    for url, transaction_ids in clients.acknowledged.items():
        balance = session.get(url, timeout=30).json()
        credited_minor = int(Decimal(balance["credit"]) * 100)
        assert credited_minor == CREDIT_MINOR * len(transaction_ids), url
    assert clients.paused_answers > 0  # every worker saw the pauses, and clients waited them out
