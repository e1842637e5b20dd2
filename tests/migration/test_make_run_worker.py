"""`make run` runs the periodic jobs without a server: `manage.py rundev` starts a real Celery
worker with beat on a broker of files (wallet_site/local_worker.py), its web process queues
tasks to that worker instead of running them eagerly, beat fires each job on its schedule,
and the worker stops with rundev.

Each test runs rundev itself, as `make run` does, in a process of its own on the test's
databases (its database, MongoDB database and ledger scope), with no CELERY_BROKER_URL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from domain.ids import WalletKey
from flags.phases import Phase
from migration.models import ReconciliationRun
from migration.outbox import MirrorState
from tests.conftest import api_token, ledger_scope
from tests.migration.conftest import Stores, enter_phase, new_key, phased_over, tx
from tests.migration.test_phase_change_across_processes import (
    database_url_of_the_test_database,
    with_database,
)
from wallet_site.embedded_mongo import free_loopback_port
from wallet_site.local_worker import worker_log

pytestmark = [pytest.mark.slow]

BASE_DIR = Path(settings.BASE_DIR)
START_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 40.0
# Left out of rundev's environment: a broker configured for the suite (CI's Redis) would
# make rundev use it instead of starting its own worker; TB_BINARY would start a TigerBeetle
# server on make run's port and data file.
FIRST_SWEEP_DONE = r"Task ledger\.sweep_outbox\[[^\]]+\] succeeded"
NOT_PASSED = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PROMETHEUS_MULTIPROC_DIR", "TB_BINARY")


@dataclass
class DevRun:
    """`manage.py rundev` running in a process of its own."""

    process: subprocess.Popen[bytes]
    base_url: str
    broker_dir: Path

    def descendants(self) -> list[int]:
        """rundev's process tree below it: the worker, its pool and beat (MongoDB already
        answers, so no embedded server is started)."""
        found, parents = [], [self.process.pid]
        while parents:
            answer = subprocess.run(
                ["pgrep", "-P", ",".join(map(str, parents))],
                capture_output=True,
                text=True,
                check=False,
            )
            parents = [int(pid) for pid in answer.stdout.split()]
            found.extend(parents)
        return found

    def wait_for_log(self, pattern: str) -> None:
        """Until the worker's log holds a line matching the regular expression `pattern`."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not re.search(pattern, self.worker_log()):
            assert time.monotonic() < deadline, f"no {pattern!r} in the worker's log"
            time.sleep(0.2)

    def worker_log(self) -> str:
        log = worker_log(self.broker_dir)
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        """What a process manager (or Ctrl-C's SIGINT) does: rundev stops its worker."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=STOP_TIMEOUT_S)


def rundev_environment(mongo_url: str, *, database: str, broker_dir: Path) -> dict[str, str]:
    scope = ledger_scope()
    env = {name: value for name, value in os.environ.items() if name not in NOT_PASSED}
    env.update(
        DATABASE_URL=database_url_of_the_test_database(),
        MONGO_URL=with_database(mongo_url, database=database),
        CELERY_FILESYSTEM_BROKER_DIR=str(broker_dir),
        # The test's ledger scope, so it reads what rundev's worker wrote to the ledger.
        TB_ID_NAMESPACE=scope.ids.namespace,
        TB_WALLET_ACCOUNT_CODE=str(scope.codes.wallet),
        DJANGO_DEBUG="false",
    )
    return env


@pytest.fixture
def start_rundev(
    committed_stores: Stores, mongo_url: str, mongo_database_name: str, tmp_path: Path
) -> Iterator[Callable[..., DevRun]]:
    runs: list[DevRun] = []

    def start(**settings_env: str) -> DevRun:
        broker_dir = tmp_path / "celery"
        env = rundev_environment(mongo_url, database=mongo_database_name, broker_dir=broker_dir)
        env.update(settings_env)
        port = free_loopback_port()
        with open(tmp_path / "rundev.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "rundev", f"127.0.0.1:{port}"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        run = DevRun(process, f"http://127.0.0.1:{port}", broker_dir)
        runs.append(run)
        wait_until_serving(run, tmp_path / "rundev.log")
        return run

    yield start
    for run in runs:
        run.stop()


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited process reparented to a PID 1 that never reaps)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_until_serving(run: DevRun, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            requests.get(f"{run.base_url}/api/ping", timeout=5)
            return
        except requests.RequestException:
            if run.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"rundev did not serve: {log.read_text()[-3000:]}") from None
            time.sleep(0.2)


def wait_for_state(stores: Stores, key: WalletKey, state: str) -> list[str]:
    """The wallet's outbox entry states once every one is `state` (or at the deadline)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        query = {"client_id": key.client_id, "wallet_seq": {"$exists": True}}
        states = [entry["mirror_state"] for entry in stores.mongo.database.log().find(query)]
        if (states and set(states) == {state}) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def test_a_task_the_web_process_queues_is_run_by_rundevs_worker(
    start_rundev: Callable[..., DevRun], committed_stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    run = start_rundev(MIRROR_SWEEP_INTERVAL_S="3600")  # no sweep but the first start's
    run.wait_for_log(FIRST_SWEEP_DONE)  # that one, before the write below
    key = new_key()

    response = requests.post(
        f"{run.base_url}/api/clients/{key.client_id}/wallets/USA/USD/credits",
        json={"transaction_id": tx(), "amount": "12.34"},
        headers={"Authorization": f"Token {api_token()}"},
        timeout=30,
    )

    assert response.status_code == 201, response.text
    assert wait_for_state(committed_stores, key, MirrorState.MIRRORED) == [MirrorState.MIRRORED]
    assert committed_stores.tigerbeetle.get_balance(key).credit_minor == 1234
    # The task's "succeeded" line is written after it returns, so after the entry is mirrored.
    run.wait_for_log(r"Task ledger\.mirror_wallet\[[^\]]+\] succeeded")
    log = run.worker_log()
    assert log.count("Task ledger.sweep_outbox[") == 2  # received, succeeded: the first start's


def test_beat_runs_the_outbox_sweeper_on_its_schedule(
    start_rundev: Callable[..., DevRun], committed_stores: Stores
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    run = start_rundev(MIRROR_SWEEP_INTERVAL_S="1")
    run.wait_for_log(FIRST_SWEEP_DONE)  # the first start's, queued by rundev, before the write
    key = new_key()
    # A write whose mirror task was never queued (a crash, a broker outage): only the sweeper
    # can apply it.
    phased_over(committed_stores, enqueue_mirror=lambda queued_key: None).add_credit(key, 700, tx())

    assert wait_for_state(committed_stores, key, MirrorState.MIRRORED) == [MirrorState.MIRRORED]
    assert committed_stores.tigerbeetle.get_balance(key).credit_minor == 700
    # Only beat's sweep could apply it; the worker's log says so once it is written out.
    run.wait_for_log(r"Scheduler: Sending due task mirror-sweep \(ledger\.sweep_outbox\)")


def test_a_first_make_run_runs_each_periodic_job_once_at_start(
    start_rundev: Callable[..., DevRun], committed_stores: Stores
) -> None:
    run = start_rundev()  # every job on its default schedule: the first reconciliation in 1 h

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not ReconciliationRun.objects.filter(finished_at__isnull=False).exists():
        assert time.monotonic() < deadline, run.worker_log()[-3000:]
        time.sleep(0.2)
    for task in ("ledger.sweep_outbox", "wallet_site.purge_expired_tokens"):
        run.wait_for_log(rf"Task {re.escape(task)}\[")


def test_make_runs_metrics_add_up_this_runs_web_process_and_worker_not_earlier_runs(
    start_rundev: Callable[..., DevRun], committed_stores: Stores, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prometheus"  # what `make run` sets before Python starts
    metrics_dir.mkdir()
    earlier_run = metrics_dir / "counter_999999999.db"
    earlier_run.write_bytes(b"")
    enter_phase(Phase.DUAL_WRITE)
    run = start_rundev(
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), METRICS_BEARER_TOKEN="scraper-token"
    )
    key = new_key()
    requests.post(
        f"{run.base_url}/api/clients/{key.client_id}/wallets/USA/USD/credits",
        json={"transaction_id": tx(), "amount": "1.00"},
        headers={"Authorization": f"Token {api_token()}"},
        timeout=30,
    ).raise_for_status()
    # The mirror counts what TigerBeetle took before it marks the entries mirrored.
    assert wait_for_state(committed_stores, key, MirrorState.MIRRORED) == [MirrorState.MIRRORED]

    scraped = requests.get(
        f"{run.base_url}/metrics", headers={"Authorization": "Bearer scraper-token"}, timeout=30
    )

    assert not earlier_run.exists()
    counted = {
        (sample.labels["store"], sample.value)
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "wallet_transactions_total" and sample.labels["currency"] == "USD"
    }
    assert counted == {("mongo", 1.0), ("tigerbeetle", 1.0)}  # the web process; the worker


def test_stopping_rundev_stops_its_worker_and_beat(start_rundev: Callable[..., DevRun]) -> None:
    run = start_rundev()
    run.wait_for_log("beat: Starting")
    run.wait_for_log(r" ready\.")
    processes = run.descendants()
    assert len(processes) >= 3  # the worker, its pool, beat

    run.stop()

    assert [pid for pid in processes if running(pid)] == []
    assert "beat: Shutting down" in run.worker_log()
