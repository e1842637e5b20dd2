"""One command for a fresh checkout: migrate, start the embedded MongoDB, print an admin
login, and serve the app. Used by `make run`.

The ledger is the embedded engine, unless TB_ADDRESSES names a cluster, or TB_BINARY names a
TigerBeetle server binary: then a local single-replica server is formatted (once) and started
under var/tigerbeetle/, used for this run, and stopped with it."""

from __future__ import annotations

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
from wallet_site.embedded_mongo import EmbeddedMongo, mongo_answers, start_embedded_mongo
from wallet_site.local_tigerbeetle import (
    LOCAL_CLUSTER_ID,
    LocalTigerBeetle,
    binary_version,
    start_local_tigerbeetle,
)

DEV_ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Migrate, start the embedded MongoDB if none answers, create an admin login, serve."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        # SIGTERM (e.g. from a process manager) must unwind too, so the servers below stop.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        mongo = self._ensure_mongo()
        tigerbeetle: LocalTigerBeetle | None = None
        try:
            tigerbeetle = self._ensure_ledger()
            password = self._reset_dev_admin()
            self.stdout.write(
                self.style.SUCCESS(
                    f"admin login: {DEV_ADMIN_USERNAME} / {password}  "
                    f"(http://{options['addrport']}/admin/)"
                )
            )
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
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
            f"data file {server.data_file}; run Celery workers with "
            f"TB_ADDRESSES={server.addresses}"
        )
        return server

    def _reset_dev_admin(self) -> str:
        """A fresh random password each run, so no fixed credential ever exists."""
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=DEV_ADMIN_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        return password
