"""The migration's jobs read MongoDB through a handle of their own (`Runtime.job_database`),
patient with a server that is up but slow to answer: a request gives up after its timeout,
a backfill (and a reconciliation, on the same handle) waits the answer out
(MIGRATION_JOB_MONGO_READ_TIMEOUT_S)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from domain.errors import StoreUnavailable
from migration.legacy_scan import LegacyScan
from migration.runtime import Runtime
from tests.migration.conftest import Stores, legacy_wallet, new_key

# A request's wait for an answer, the jobs' wait, and how long the server keeps a find
# before it answers: between the two.
REQUEST_READ_TIMEOUT_S = 0.3
JOB_READ_TIMEOUT_S = 10.0
FIND_BLOCKED_MS = 800


@pytest.fixture
def runtime(stores: Stores) -> Iterator[Runtime]:
    """The test's runtime with requests that wait REQUEST_READ_TIMEOUT_S for an answer."""
    impatient = dataclasses.replace(
        stores.runtime,
        mongo_database=stores.runtime.mongo_database.patient(REQUEST_READ_TIMEOUT_S),
        job_mongo_read_timeout_s=JOB_READ_TIMEOUT_S,
    )
    yield impatient
    impatient.close()


def slow_finds(admin: pymongo.MongoClient[dict[str, Any]], *, times: int) -> None:
    """The server holds each of the next `times` finds FIND_BLOCKED_MS before it answers."""
    admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"times": times},
        data={"failCommands": ["find"], "blockConnection": True, "blockTimeMS": FIND_BLOCKED_MS},
    )


def test_a_request_gives_up_on_a_find_slower_than_its_timeout(
    stores: Stores, runtime: Runtime, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=100, debit_minor=0)
    slow_finds(mongo_admin, times=2)  # pymongo retries a read that timed out once

    with pytest.raises(StoreUnavailable, match="timed out"):
        LegacyScan(runtime.mongo_database).snapshots([key])


def test_a_backfill_waits_out_finds_slower_than_a_requests_timeout(
    stores: Stores, runtime: Runtime, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = new_key()
    legacy_wallet(stores, key, credit_minor=7_000, debit_minor=3_000)
    slow_finds(mongo_admin, times=3)

    report = runtime.backfill().run(progress=False)

    assert (report.imported, report.failed) == (1, [])
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (7_000, 3_000, 10_000)
