"""One command for a fresh checkout: migrate, start the embedded MongoDB, start a Celery
worker with beat, print an admin login, and serve the app. Used by `make run`.

The ledger is the embedded engine, unless TB_ADDRESSES names a cluster, or TB_BINARY names a
TigerBeetle server binary: then a local single-replica server is formatted (once) and started
under var/tigerbeetle/, used for this run, and stopped with it.

Without CELERY_BROKER_URL the worker and beat run on a broker of files under var/celery/
(`wallet_site.local_worker`): the web process queues its tasks to that worker (never eagerly),
and beat runs the outbox sweeper, reconciliation and every other job of CELERY_BEAT_SCHEDULE on
their schedules. With CELERY_BROKER_URL set, the tasks go there and the deployment runs its
own worker and beat.

`make run` sets PROMETHEUS_MULTIPROC_DIR (var/prometheus/) before Python starts, so /metrics
adds up this process's figures and its worker's (the mirror, shadow comparisons); rundev
clears what earlier runs left there."""

from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from ledger.backends.tigerbeetle_client import TigerBeetleBackend
from staff import enrolment
from staff.two_factor import has_authenticator
from wallet_site.celery import app as celery_app
from wallet_site.embedded_mongo import EmbeddedMongo, mongo_answers, start_embedded_mongo
from wallet_site.local_tigerbeetle import (
    LOCAL_CLUSTER_ID,
    LocalTigerBeetle,
    binary_version,
    start_local_tigerbeetle,
)
from wallet_site.local_worker import (
    LocalWorker,
    fresh_schedule,
    queue_each_job_once,
    queue_to_filesystem_broker,
    start_local_worker,
    worker_log,
)

DEV_ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Migrate, start the embedded MongoDB if none answers, create an admin login, serve."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        forget_earlier_runs_metrics()
        # SIGTERM (e.g. from a process manager) must unwind too, so the servers below stop.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        mongo = self._ensure_mongo()
        tigerbeetle: LocalTigerBeetle | None = None
        worker: LocalWorker | None = None
        try:
            tigerbeetle = self._ensure_ledger()
            worker = self._ensure_worker(tigerbeetle)
            password = self._reset_dev_admin()
            self.stdout.write(
                self.style.SUCCESS(
                    f"admin login: {DEV_ADMIN_USERNAME} / {password}  "
                    f"(http://{options['addrport']}/admin/; the first sign-in enrols an "
                    "authenticator app as its second factor: README, staff accounts)"
                )
            )
            enrolment_code = self._dev_admin_enrolment_code()
            if enrolment_code:
                self.stdout.write(
                    self.style.SUCCESS(f"admin's one-time enrolment code: {enrolment_code}")
                )
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            if worker:
                worker.stop()
            if tigerbeetle:
                TigerBeetleBackend.close_process_backend()
                tigerbeetle.stop()
            if mongo:
                mongo.stop()

    def _ensure_mongo(self) -> EmbeddedMongo | None:
        """Reuse a server already answering at MONGO_URL; otherwise start the embedded one
        on MONGO_URL's port with data kept under var/mongo."""
        if mongo_answers(settings.MONGO_URL):
            self.stdout.write(f"MongoDB answers at {settings.MONGO_URL}")
            return None
        port = urlparse(settings.MONGO_URL).port or settings.MONGO_EMBEDDED_PORT
        storage = settings.VAR_DIR / "mongo"
        storage.mkdir(parents=True, exist_ok=True)
        mongo = start_embedded_mongo(
            port=port,
            storage_path=str(storage),
            log_path=settings.VAR_DIR / "mongo.log",
            transaction_lifetime_s=settings.MONGO_TRANSACTION_LIFETIME_S,
        )
        self.stdout.write(f"embedded MongoDB (secantusdb) started at {mongo.url}")
        return mongo

    def _ensure_ledger(self) -> LocalTigerBeetle | None:
        """TB_ADDRESSES as given; else with TB_BINARY a local server, which this run uses;
        else the embedded engine."""
        if settings.TB_ADDRESSES:
            self.stdout.write(f"ledger: TigerBeetle cluster at {settings.TB_ADDRESSES}")
            return None
        if not settings.TB_BINARY:
            self.stdout.write(
                "ledger: the embedded engine (TB_BINARY=/path/to/tigerbeetle make run "
                "starts a local TigerBeetle server instead)"
            )
            return None
        binary = Path(settings.TB_BINARY)
        server = start_local_tigerbeetle(
            binary,
            data_dir=settings.VAR_DIR / "tigerbeetle",
            port=settings.TB_LOCAL_PORT,
            log_path=settings.VAR_DIR / "tigerbeetle.log",
        )
        # This process serves the app; the backend reads these when it first connects.
        settings.TB_ADDRESSES = server.addresses
        settings.TB_CLUSTER_ID = LOCAL_CLUSTER_ID
        self.stdout.write(
            f"ledger: local TigerBeetle ({binary_version(binary)}) at {server.addresses}, "
            f"data file {server.data_file}; other Celery workers need "
            f"TB_ADDRESSES={server.addresses}"
        )
        return server

    def _ensure_worker(self, tigerbeetle: LocalTigerBeetle | None) -> LocalWorker | None:
        """CELERY_BROKER_URL as given (its own worker and beat run elsewhere); else a worker
        with beat on the filesystem broker under CELERY_FILESYSTEM_BROKER_DIR, which this
        process then queues its tasks to."""
        if settings.CELERY_BROKER_URL:
            self.stdout.write(
                f"Celery: tasks go to {settings.CELERY_BROKER_URL}; run its worker and beat "
                "beside (celery -A wallet_site worker, celery -A wallet_site beat)"
            )
            return None
        directory = Path(settings.CELERY_FILESYSTEM_BROKER_DIR)
        first_start = fresh_schedule(directory)
        env = {}
        if tigerbeetle:  # the worker uses the server this run started, as this process does
            env = {"TB_ADDRESSES": tigerbeetle.addresses, "TB_CLUSTER_ID": str(LOCAL_CLUSTER_ID)}
        worker = start_local_worker(
            directory=directory, queue=settings.CELERY_TASK_DEFAULT_QUEUE, env=env
        )
        queue_to_filesystem_broker(celery_app, directory=directory)
        jobs = ", ".join(sorted(settings.CELERY_BEAT_SCHEDULE))
        self.stdout.write(
            f"Celery: a worker with beat on a broker of files under {directory} "
            f"(log: {worker_log(directory)}); scheduled: {jobs}"
        )
        if first_start:
            queued = queue_each_job_once(celery_app, schedule=settings.CELERY_BEAT_SCHEDULE)
            self.stdout.write(f"Celery: first start, each job queued once now: {queued}")
        return worker

    def _dev_admin_enrolment_code(self) -> str:
        """The code the admin's first enrolment asks for (STAFF_2FA_ENROLMENT_NEEDS_CODE),
        while it has no authenticator; "" when none is needed."""
        user = get_user_model().objects.get(username=DEV_ADMIN_USERNAME)
        if not enrolment.needs_code() or has_authenticator(user):
            return ""
        return enrolment.issue_code(user, issued_by="make run")

    def _reset_dev_admin(self) -> str:
        """A fresh random password each run, so no fixed credential ever exists."""
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=DEV_ADMIN_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        return password


def forget_earlier_runs_metrics() -> None:
    """Under PROMETHEUS_MULTIPROC_DIR, delete the metric files of every process but this one
    (prometheus_client names them `<kind>_<pid>.db`): the last run's counters are not this
    run's, as gunicorn's directory is emptied at each start."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in Path(directory).glob("*.db"):
        if path.stem.rsplit("_", 1)[-1] != str(os.getpid()):
            path.unlink(missing_ok=True)
