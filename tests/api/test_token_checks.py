"""A request checks only the token it presents; expired tokens are refused when presented and
purged by a periodic task, not read on every request."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken
from rest_framework.test import APIClient

from wallet_site.celery import app
from wallet_site.tasks import purge_expired_tokens

pytestmark = pytest.mark.django_db

EXPIRED = timedelta(seconds=-1)
PURGE_TASK = "wallet_site.purge_expired_tokens"


def new_user() -> Any:
    return get_user_model().objects.create_user(f"token-{uuid.uuid4().hex[:8]}")


def ping(token: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/ping")


def test_an_expired_token_is_refused_and_deleted_when_presented() -> None:
    instance, token = AuthToken.objects.create(user=new_user(), expiry=EXPIRED)

    answer = ping(token)

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "authentication_failed"
    assert not AuthToken.objects.filter(pk=instance.pk).exists()


def test_a_request_reads_only_the_token_it_presents() -> None:
    user = new_user()
    for _ in range(30):  # a service account's rotated tokens
        AuthToken.objects.create(user=user)
    _, token = AuthToken.objects.create(user=user)
    table = AuthToken._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        assert ping(token).status_code == 200

    token_reads = [query for query in queries if table in query["sql"]]
    assert len(token_reads) == 1


def test_a_request_leaves_the_callers_other_expired_tokens_refused_until_purged() -> None:
    user = new_user()
    expired, expired_token = AuthToken.objects.create(user=user, expiry=EXPIRED)
    _, token = AuthToken.objects.create(user=user)

    assert ping(token).status_code == 200
    assert AuthToken.objects.filter(pk=expired.pk).exists()
    assert ping(expired_token).status_code == 401


def test_the_purge_deletes_every_expired_token_and_keeps_the_others() -> None:
    first, second = new_user(), new_user()
    for user in (first, second):
        AuthToken.objects.create(user=user, expiry=EXPIRED)
    living, _ = AuthToken.objects.create(user=first)
    unexpiring, _ = AuthToken.objects.create(user=second, expiry=None)

    assert purge_expired_tokens() == 2

    assert set(AuthToken.objects.values_list("pk", flat=True)) == {living.pk, unexpiring.pk}


def test_the_purge_is_on_the_beat_schedule_and_known_to_the_workers() -> None:
    app.loader.import_default_modules()
    schedule = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert schedule[PURGE_TASK] == settings.TOKEN_PURGE_INTERVAL_S
    assert PURGE_TASK in app.tasks
