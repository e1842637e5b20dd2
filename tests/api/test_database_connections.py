"""A request's database connection serves the next request of its thread (CONN_MAX_AGE), as
under gunicorn's threads, and one the database dropped in between is replaced, not failed on.

Django's test client disconnects the signals that close connections between requests, so
these requests go through the WSGI handler itself, signals and all."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory

from tests.conftest import api_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def authorization() -> str:
    return f"Token {api_token(())}"


def served_status(path: str, *, authorization: str) -> str:
    environ = RequestFactory().get(path, HTTP_AUTHORIZATION=authorization).environ
    statuses: list[str] = []
    response = WSGIHandler()(environ, lambda status, headers: statuses.append(status))
    response.close()  # the end of the request: request_finished, where Django closes old ones
    return statuses[0]


@pytest.fixture
def after_one_request(authorization: str) -> Iterator[object]:
    """The connection the first request left behind."""
    assert served_status("/api/ping", authorization=authorization).startswith("200")
    yield connection.connection


def test_the_next_request_reuses_the_connection(
    authorization: str, after_one_request: object
) -> None:
    assert after_one_request is not None
    assert served_status("/api/ping", authorization=authorization).startswith("200")
    assert connection.connection is after_one_request


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="a server that drops a session is PostgreSQL"
)
def test_a_connection_the_database_dropped_is_replaced_by_the_next_request(
    authorization: str, after_one_request: object
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend_pid,) = cursor.fetchone()

    def terminate() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
                assert cursor.fetchone() == (True,)
        finally:
            connection.close()

    thread = threading.Thread(target=terminate)
    thread.start()
    thread.join(5)

    assert served_status("/api/ping", authorization=authorization).startswith("200")
    assert connection.connection is not after_one_request
