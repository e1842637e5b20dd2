"""`manage.py enrolment_code USERNAME`: issue a one-time code that lets USERNAME enrol an
authenticator (STAFF_2FA_ENROLMENT_NEEDS_CODE). For the first administrator, whom nobody can
issue one for in the admin; audited as issued by the command's operator."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from staff.enrolment import issue_code


class Command(BaseCommand):
    help = "Issue a one-time code that lets USERNAME enrol an authenticator (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--actor", default="", help="who issues it (default: $USER)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"there is no user {options['username']!r}")
        actor = options["actor"] or _login_name()
        code = issue_code(user, issued_by=f"{actor} (command)")
        self.stdout.write(f"enrolment code for {user.get_username()}: {code}")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
