"""One command for a fresh checkout: migrate, start the embedded MongoDB, print an admin
login, and serve the app. Used by `make run`."""

from __future__ import annotations

import secrets
import signal
import sys
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from wallet_site.embedded_mongo import EmbeddedMongo, mongo_answers, start_embedded_mongo

DEV_ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Migrate, start the embedded MongoDB if none answers, create an admin login, serve."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        mongo = self._ensure_mongo()
        password = self._reset_dev_admin()
        self.stdout.write(
            self.style.SUCCESS(
                f"admin login: {DEV_ADMIN_USERNAME} / {password}  "
                f"(http://{options['addrport']}/admin/)"
            )
        )
        # SIGTERM (e.g. from a process manager) must unwind too, so the server below stops.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
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
        storage.mkdir(exist_ok=True)
        mongo = start_embedded_mongo(
            port=port,
            storage_path=str(storage),
            log_path=settings.VAR_DIR / "mongo.log",
            transaction_lifetime_s=settings.MONGO_TRANSACTION_LIFETIME_S,
        )
        self.stdout.write(f"embedded MongoDB (secantusdb) started at {mongo.url}")
        return mongo

    def _reset_dev_admin(self) -> str:
        """A fresh random password each run, so no fixed credential ever exists."""
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=DEV_ADMIN_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        return password
