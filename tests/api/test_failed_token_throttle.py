"""Failed API token authentications from one address are throttled (issue 27): past
API_AUTH_FAILURE_LIMIT within API_AUTH_FAILURE_WINDOW_S, the address is answered 429
too_many_failed_authentications with Retry-After, whatever token it sends."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import token_api_client

pytestmark = pytest.mark.django_db

PING = "/api/ping"


@pytest.fixture(autouse=True)
def _limit_of_three(settings: Any) -> None:
    settings.API_AUTH_FAILURE_LIMIT = 3
    settings.API_AUTH_FAILURE_WINDOW_S = 120


def with_wrong_token(ip: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 64)
    return client


def error_code(answer: Any) -> str:
    return str(answer.json()["error"]["code"])


def test_wrong_tokens_below_the_limit_are_answered_401() -> None:
    client = with_wrong_token()

    statuses = [client.get(PING).status_code for _ in range(3)]

    assert statuses == [401, 401, 401]


def test_past_the_limit_the_address_is_answered_429_with_retry_after() -> None:
    client = with_wrong_token()
    for _ in range(3):
        client.get(PING)

    answer = client.get(PING)

    assert answer.status_code == 429
    assert error_code(answer) == "too_many_failed_authentications"
    assert 0 < int(answer["Retry-After"]) <= 120
    assert 0 < answer.json()["error"]["details"]["retry_after_s"] <= 120


def test_past_the_limit_even_a_valid_token_from_that_address_waits() -> None:
    for _ in range(3):
        with_wrong_token().get(PING)
    valid = token_api_client()
    valid.defaults["REMOTE_ADDR"] = "10.0.0.1"

    assert valid.get(PING).status_code == 429


def test_other_addresses_are_not_throttled_by_one_address_failures() -> None:
    for _ in range(4):
        with_wrong_token().get(PING)

    assert with_wrong_token(ip="10.0.0.2").get(PING).status_code == 401


def test_requests_without_a_token_count_no_failure() -> None:
    anonymous = APIClient(REMOTE_ADDR="10.0.0.1")
    for _ in range(4):
        anonymous.get(PING)

    assert with_wrong_token().get(PING).status_code == 401


def test_the_schema_states_the_code_for_429() -> None:
    client = token_api_client()

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    ping_429 = schema["paths"]["/api/ping"]["get"]["responses"]["429"]
    assert "too_many_failed_authentications" in str(ping_429)


def test_a_limit_of_zero_turns_the_throttle_off(settings: Any) -> None:
    settings.API_AUTH_FAILURE_LIMIT = 0
    client = with_wrong_token()

    statuses = [client.get(PING).status_code for _ in range(5)]

    assert statuses == [401] * 5
