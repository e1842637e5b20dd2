"""The event feed's tests run on the migration's fixtures: both stores on a fresh MongoDB
database and the test ledger, installed as the process's runtime."""

from __future__ import annotations

from typing import Any

import pytest

from tests.migration.conftest import (  # noqa: F401 -- fixtures, by name
    _tasks_in_process,
    committed_stores,
    criteria_not_awaited,
    stores,
)


@pytest.fixture(autouse=True)
def _outbox_rows_at_once(settings: Any) -> None:
    """Phase 4's outbox rows are collected as soon as they are written (no settle time)."""
    settings.EVENTS_STORE_SETTLE_S = 0.0
