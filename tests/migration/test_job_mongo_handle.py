"""The migration's jobs read MongoDB through a handle of their own (`Runtime.job_database`),
patient with a server that is up but slow to answer: a request gives up after its timeout,
a backfill (and a reconciliation, on the same handle) waits the answer out
(MIGRATION_JOB_MONGO_READ_TIMEOUT_S), and a read that failed for a moment is tried again a
bounded number of times (MIGRATION_JOB_MONGO_READ_ATTEMPTS); a request reads once."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from domain.errors import StoreUnavailable
from domain.ids import WalletKey
from flags.phases import Phase
from ledger.stores.mongo_database import MongoDatabase
from migration.legacy_scan import LegacyScan
from migration.outbox import MirrorOutbox
from migration.reconciliation import Reconciliation
from migration.runtime import Runtime
from tests.migration.conftest import (
    Stores,
    enter_phase,
    legacy_wallet,
    new_key,
    phased_over,
    tx,
)

# A request's wait for an answer, the jobs' wait, and how long the server keeps a find
# before it answers: between the two.
REQUEST_READ_TIMEOUT_S = 0.3
JOB_READ_TIMEOUT_S = 10.0
FIND_BLOCKED_MS = 800
# The server gave up on the read in time (MaxTimeMSExpired): no answer for now. (A
# ShutdownInProgress would do too, but pymongo then forgets the server and waits ~10 s for
# its monitor to find it again.)
GAVE_UP_IN_TIME = 50
# A query the server cannot run (BadValue): asking again gives the same answer.
BAD_VALUE = 2
RETRIED = "MongoDB read failed for a moment"


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


def failing_finds(
    admin: pymongo.MongoClient[dict[str, Any]], *, code: int, times: int, skip: int = 0
) -> None:
    """The next `times` finds after `skip` more fail with `code`."""
    admin.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"skip": skip, "times": times},
        data={"failCommands": ["find"], "errorCode": code},
    )


def job_handle(stores: Stores, *, read_attempts: int) -> MongoDatabase:
    """The jobs' handle, as `Runtime.job_database` builds it, with waits of 10 ms between
    tries instead of seconds."""
    return stores.runtime.mongo_database.patient(
        JOB_READ_TIMEOUT_S, read_attempts=read_attempts, read_retry_wait_s=0.01
    )


def legacy_key(stores: Stores) -> WalletKey:
    """A legacy wallet of 1.00 USD."""
    key = new_key()
    legacy_wallet(stores, key, credit_minor=100, debit_minor=0)
    return key


def test_a_jobs_read_that_failed_for_a_moment_is_tried_again(
    stores: Stores,
    mongo_admin: pymongo.MongoClient[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = legacy_key(stores)
    failing_finds(mongo_admin, code=GAVE_UP_IN_TIME, times=2)

    with caplog.at_level(logging.WARNING, logger="ledger.stores.mongo_database"):
        snapshots = LegacyScan(job_handle(stores, read_attempts=3)).snapshots([key])

    assert snapshots[key].balance.credit_minor == 100
    assert len([r for r in caplog.records if RETRIED in r.message]) == 2


def test_a_jobs_read_fails_once_its_attempts_are_spent(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = legacy_key(stores)
    failing_finds(mongo_admin, code=GAVE_UP_IN_TIME, times=6)

    with pytest.raises(StoreUnavailable, match="MaxTimeMSExpired"):
        LegacyScan(job_handle(stores, read_attempts=3)).snapshots([key])


def test_a_read_the_server_refuses_as_asked_is_not_tried_again(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = legacy_key(stores)
    # One refusal, then answers: a second try would read the wallet.
    failing_finds(mongo_admin, code=BAD_VALUE, times=1)

    with pytest.raises(StoreUnavailable):
        LegacyScan(job_handle(stores, read_attempts=3)).snapshots([key])


def test_a_request_reads_once(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    key = legacy_key(stores)
    failing_finds(mongo_admin, code=GAVE_UP_IN_TIME, times=2)

    with pytest.raises(StoreUnavailable):
        LegacyScan(stores.runtime.mongo_database).snapshots([key])


def reconcile_a_wallet_the_mirror_lags_on(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]], *, read_attempts: int
) -> Any:
    """A reconciliation over one wallet whose last write waits for the mirror, so its page
    looks at it again; the two finds after the scan's fail, then the server answers."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    phased_over(stores, enqueue_mirror=lambda k: None).add_credit(key, 5, tx())
    failing_finds(mongo_admin, code=GAVE_UP_IN_TIME, skip=1, times=2)
    database = job_handle(stores, read_attempts=read_attempts)
    reconciliation = Reconciliation(LegacyScan(database), MirrorOutbox(database), stores.batches)
    return reconciliation.run(triggered_by="test")


def test_a_reconciliation_outlasts_a_second_looks_read_failing_for_a_moment(
    stores: Stores,
    mongo_admin: pymongo.MongoClient[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ledger.stores.mongo_database"):
        run = reconcile_a_wallet_the_mirror_lags_on(stores, mongo_admin, read_attempts=3)

    assert (run.error, run.checked, run.matched, run.mismatched) == ("", 1, 1, 0)
    assert [r.message for r in caplog.records if RETRIED in r.message] != []


def test_with_one_attempt_the_same_read_ends_the_reconciliation(
    stores: Stores, mongo_admin: pymongo.MongoClient[dict[str, Any]]
) -> None:
    run = reconcile_a_wallet_the_mirror_lags_on(stores, mongo_admin, read_attempts=1)

    assert "StoreUnavailable" in run.error
    assert run.checked == 0
