"""Errors gunicorn answers itself, before the app routes anything, are in the API's JSON
error shape too (a live gunicorn started from the top level, as deployed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from wallet_site.embedded_mongo import free_loopback_port

TOP_LEVEL = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_loopback_port()
    database = tmp_path_factory.mktemp("gunicorn") / "db.sqlite3"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{database}", DJANGO_DEBUG="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wallet_site.wsgi", "-b", f"127.0.0.1:{port}"],
        cwd=TOP_LEVEL,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/api/ping", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_url_longer_than_the_request_line_limit_answers_414_in_the_json_error_shape(
    gunicorn_url: str,
) -> None:
    response = requests.get(f"{gunicorn_url}/api/transactions/{'a' * 10_000}", timeout=10)

    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "uri_too_long"
    assert set(error) == {"code", "message", "details"}


def test_headers_over_their_limit_answer_in_the_json_error_shape(gunicorn_url: str) -> None:
    response = requests.get(
        f"{gunicorn_url}/api/ping", headers={"X-Padding": "p" * 20_000}, timeout=10
    )

    assert 400 <= response.status_code < 500
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()["error"]) == {"code", "message", "details"}
