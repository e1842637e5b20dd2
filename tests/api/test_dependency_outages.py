"""A dependency that does not answer is a documented answer, never a 500: a Redis cache that is
down is a miss (the throttle degrades open), a database that does not answer is 503
`database_unavailable` with Retry-After, also while the token is being checked.

The Redis here is a real address nothing listens on (connection refused, as when the server is
stopped); tests/faults/ takes the real servers away under traffic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.core.cache import caches
from django.db import InterfaceError, OperationalError
from django.test import override_settings

from api import views
from api.authentication import TokenAuthentication
from tests.conftest import token_api_client
from wallet_site.embedded_mongo import free_loopback_port

pytestmark = pytest.mark.django_db

DEGRADING_REDIS = "wallet_site.cache.DegradingRedisCache"


@pytest.fixture
def redis_down() -> Iterator[None]:
    """The default cache is Redis at an address where no server answers."""
    location = f"redis://127.0.0.1:{free_loopback_port()}/0"
    options = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
    with override_settings(
        CACHES={"default": {"BACKEND": DEGRADING_REDIS, "LOCATION": location, "OPTIONS": options}}
    ):
        yield


@pytest.mark.usefixtures("redis_down")
def test_a_cache_that_is_down_reads_as_a_miss_and_skips_writes() -> None:
    cache = caches["default"]

    cache.set("k", "v")
    cache.delete("k")

    assert cache.get("k", "missed") == "missed"
    assert cache.get_many(["k"]) == {}
    assert cache.add("k", "v") is False


@pytest.mark.usefixtures("redis_down")
def test_the_throttle_degrades_open_while_its_cache_is_down(settings: Any) -> None:
    settings.API_THROTTLE_RATE = "1/min"
    api = token_api_client(())

    statuses = [api.get("/api/ping").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


def assert_database_unavailable(response: Any) -> None:
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_a_database_that_fails_in_the_view_answers_503_database_unavailable(
    error: type[Exception],
) -> None:
    api = token_api_client()
    failing = mock.Mock(side_effect=error("connection refused"))

    with mock.patch.object(views, "wallet_service", failing):
        response = api.get("/api/clients/alice/wallets/USA/USD")

    assert_database_unavailable(response)


def test_a_database_that_fails_while_checking_the_token_answers_503_database_unavailable() -> None:
    api = token_api_client()

    with mock.patch.object(
        TokenAuthentication,
        "authenticate_credentials",
        side_effect=OperationalError("server closed the connection unexpectedly"),
    ):
        response = api.get("/api/ping")

    assert_database_unavailable(response)


def test_a_write_refused_as_store_unavailable_says_when_to_retry() -> None:
    from domain.errors import StoreUnavailable

    api = token_api_client()
    failing = mock.Mock(side_effect=StoreUnavailable())

    with mock.patch.object(views, "wallet_service", failing):
        response = api.post(
            "/api/clients/alice/wallets/USA/USD/credits",
            {"transaction_id": "t-1", "amount": "1"},
            format="json",
        )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert int(response["Retry-After"]) > 0
