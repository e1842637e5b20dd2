"""`manage.py create_service_account NAME`: an API account for a payment system, and a token.

The account has no password (it cannot sign in to the admin) and is in the "Service
account" group (read balances, post credits and debits). Each run issues a new token and
prints it once: only its digest is stored. Run it again with --revoke-others to rotate.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from knox.models import AuthToken

from api.permissions import SERVICE_ACCOUNT_GROUP


class Command(BaseCommand):
    help = "Create (or reuse) a service account and print a new API token for it, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--ttl-days",
            type=int,
            default=settings.API_TOKEN_TTL_DAYS,
            help="days until the token expires; 0: until revoked (default API_TOKEN_TTL_DAYS)",
        )
        parser.add_argument(
            "--revoke-others",
            action="store_true",
            help="delete the account's other tokens (rotation: deploy the new one first)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["ttl_days"] < 0:
            raise CommandError("--ttl-days must be 0 (no expiry) or more.")
        try:
            group = Group.objects.get(name=SERVICE_ACCOUNT_GROUP)
        except Group.DoesNotExist:
            raise CommandError(f"No {SERVICE_ACCOUNT_GROUP!r} group: run migrate.") from None
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(
                username=options["username"], defaults={"is_staff": False}
            )
            if created:
                user.set_unusable_password()
                user.save()
                user.groups.add(group)
            elif not user.groups.filter(pk=group.pk).exists():
                raise CommandError(
                    f"{user.username!r} exists and is not a service account; "
                    "pick another name (or add it to the group in the admin first)."
                )
            revoked = 0
            if options["revoke_others"]:
                revoked, _ = AuthToken.objects.filter(user=user).delete()
            ttl = timedelta(days=options["ttl_days"]) if options["ttl_days"] else None
            instance, token = AuthToken.objects.create(user=user, expiry=ttl)
        what = "created" if created else "exists"
        self.stdout.write(f"service account {user.username!r} {what}")
        if revoked:
            self.stdout.write(f"revoked {revoked} earlier token(s)")
        expiry = instance.expiry.isoformat() if instance.expiry else "never (until revoked)"
        self.stdout.write(f"expires: {expiry}")
        self.stdout.write("token (shown once, only its hash is kept):")
        self.stdout.write(token)
