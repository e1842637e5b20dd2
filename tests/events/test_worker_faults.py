"""Taking real dependencies away from the event feed: a delivery worker (a real Celery worker
process) killed with SIGKILL in the middle of a delivery, and the Celery broker (a Redis server
of the test's own) stopped while money moves. Nothing is lost: the feed's state is in the
databases, never in a message, and the receiver sees every event at least once, in order."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.contrib.auth import get_user_model
from kombu.exceptions import OperationalError

from events.models import Delivery, Event, Subscription
from events.tasks import collect_events_now
from tests.events.receiver import Receiver, running_receiver
from tests.migration.conftest import Stores, new_key, tx
from tests.migration.test_phase_change_across_processes import (
    database_url_of_the_test_database,
    with_database,
)
from wallet_site.child_process import stop_child
from wallet_site.embedded_mongo import free_loopback_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
ROOT = Path(__file__).resolve().parents[2]
SECRET = "worker-faults-secret-0123456789abcdef"
WAIT_S = 60.0
QUEUE = "events-faults"


def wait_until(check: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not {what} within {timeout_s} s")


@dataclass
class Broker:
    """A Redis server of the test's own, the Celery broker; stopped and started again on the
    same port."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self._answers, what="the broker answering", timeout_s=10)

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)
            self.process = None


@pytest.fixture
def broker() -> Iterator[Broker]:
    started = Broker(port=free_loopback_port())
    started.start()
    try:
        yield started
    finally:
        started.stop()


@dataclass
class Workers:
    environment: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "wallet_site",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    QUEUE,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "warning",
                ],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # the worker's own session only
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)
            self.process = None


@pytest.fixture
def workers(
    committed_stores: Stores,
    broker: Broker,
    mongo_url: str,
    mongo_database_name: str,
    tmp_path: Path,
) -> Iterator[Workers]:
    environment = dict(os.environ)
    environment.update(
        DATABASE_URL=database_url_of_the_test_database(),
        MONGO_URL=with_database(mongo_url, database=mongo_database_name),
        CELERY_BROKER_URL=broker.url,
        CELERY_RESULT_BACKEND="",
        CELERY_QUEUE=QUEUE,
        EVENTS_DELIVERY_TIMEOUT_S="1",  # the lease of a claimed delivery: 2 s
        EVENTS_DELIVERY_BACKOFF_BASE_S="0.2",
        EVENTS_STORE_SETTLE_S="0",
        LOG_LEVEL="WARNING",
    )
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    started = Workers(environment, tmp_path / "worker.log")
    try:
        yield started
    finally:
        started.stop()


def sender(broker: Broker) -> Celery:
    """A producer of our own on the test's broker. Never the current app: the process's own
    app (eager here, or on CI's broker) must stay the one every later test's tasks go to."""
    app = Celery("events-faults-sender", broker=broker.url, set_as_current=False)
    app.conf.broker_connection_timeout = 1.0
    app.conf.task_default_queue = QUEUE
    return app


def send(broker: Broker, task: str) -> None:
    # The URL given, not the app's setting: Celery prefers CELERY_BROKER_URL from the
    # environment (set on CI) to the app's own broker.
    app = sender(broker)
    with app.connection_for_write(url=broker.url) as connection:
        app.send_task(task, connection=connection, queue=QUEUE, retry=False)


def subscribe(receiver: Receiver) -> Subscription:
    owner = get_user_model().objects.create_user(f"hooks-{time.monotonic_ns()}")
    return Subscription.objects.create(owner=owner, url=receiver.url, secret=receiver.secret)


def all_delivered() -> bool:
    return not Delivery.objects.exclude(state=Delivery.State.DELIVERED).exists()


def test_a_worker_killed_mid_delivery_loses_nothing_and_the_receiver_sees_it_again(
    committed_stores: Stores, workers: Workers, broker: Broker
) -> None:
    key = new_key()
    ids = [tx(), tx(), tx()]
    arrived, release = threading.Event(), threading.Event()
    requests_seen: list[str] = []
    with running_receiver(SECRET) as receiver:
        subscribe(receiver)
        for transaction_id in ids:
            committed_stores.phased.add_credit(key, 100, transaction_id)
        collect_events_now(committed_stores.runtime)

        def answer(event: dict[str, Any]) -> int:
            requests_seen.append(event["reference_id"])
            if len(requests_seen) == 1:  # the first request hangs until the worker is dead
                arrived.set()
                release.wait(WAIT_S)
            return 204

        receiver.answer = answer
        workers.start()
        send(broker, "events.deliver")
        assert arrived.wait(WAIT_S), "the worker never sent the first delivery"

        workers.kill()
        release.set()
        first = Delivery.objects.get(event__reference_id=ids[0])
        assert (first.state, first.attempts) == ("pending", 0)  # claimed, never answered

        workers.start()

        def delivered_after_resend() -> bool:
            send(broker, "events.deliver")
            time.sleep(0.5)
            return all_delivered()

        wait_until(delivered_after_resend, what="every delivery delivered")

    received = [e["reference_id"] for e in receiver.received]
    # The hung request was answered after its worker died: the receiver took it, and takes
    # it again from the next worker (at least once; the event id tells a repeat).
    assert received == [ids[0], *ids]
    assert len({e["event_id"] for e in receiver.received}) == 3
    assert requests_seen == received


def test_a_broker_outage_loses_no_event(
    committed_stores: Stores, workers: Workers, broker: Broker
) -> None:
    key = new_key()
    before, during = tx(), tx()
    with running_receiver(SECRET) as receiver:
        subscribe(receiver)
        workers.start()
        committed_stores.phased.add_credit(key, 100, before)
        broker.stop()

        committed_stores.phased.add_credit(key, 50, during)  # MongoDB's log holds it
        with pytest.raises(OperationalError):
            send(broker, "events.collect")  # what beat meets while the broker is away
        assert not Event.objects.exists()

        broker.start()

        def collected_and_delivered() -> bool:
            send(broker, "events.collect")
            time.sleep(0.5)
            return Event.objects.count() == 2 and all_delivered()

        wait_until(collected_and_delivered, what="both events collected and delivered")

    assert [e["reference_id"] for e in receiver.received] == [before, during]
