"""Celery tasks of the site itself (the migration's are in `migration/tasks.py`)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone
from knox.models import AuthToken


@shared_task(name="wallet_site.purge_expired_tokens")
def purge_expired_tokens() -> int:
    """Delete every expired API token; how many. Requests no longer do it for their caller's
    other tokens (`api.authentication`)."""
    deleted, _ = AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    return deleted
