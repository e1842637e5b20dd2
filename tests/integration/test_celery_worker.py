"""The Celery wiring against a real worker (CI starts one with a Redis broker)."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from migration.tasks import check_ledger_backend

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def expected_backend() -> str:
    """The backend this test run uses; the worker serving it must use the same one."""
    return "TigerBeetleBackend" if settings.TB_ADDRESSES else "EngineBackend"


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL, reason="no CELERY_BROKER_URL: tasks run eagerly here"
)
def test_a_real_worker_process_runs_the_ledger_check_on_the_same_ledger_backend() -> None:
    result = check_ledger_backend.delay().get(timeout=60)

    assert result["worker_pid"] != os.getpid()
    assert result["backend"] == expected_backend()


def test_ledger_check_reports_which_backend_answered_and_how_fast() -> None:
    result = check_ledger_backend.apply().get()

    assert result["backend"] == expected_backend()
    assert 0 <= result["round_trip_us"] < 5_000_000
