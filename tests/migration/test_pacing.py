"""The migration jobs' rate (MIGRATION_JOB_MAX_WALLETS_PER_S, migration.pacing): the scan of
the backfill and reconciliation waits between pages; nothing else does."""

from __future__ import annotations

import dataclasses

import pytest

from flags.phases import Phase
from migration.legacy_scan import LegacyScan
from migration.pacing import WalletPace, job_pace
from migration.reconciliation import Reconciliation
from tests.migration.conftest import Stores, enter_phase, new_key, tx


class FakeTime:
    """A clock that moves only when the pace sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_pace_lets_a_second_of_wallets_through_then_sleeps_off_the_debt() -> None:
    time = FakeTime()
    pace = WalletPace(1_000, clock=time.clock, sleep=time.sleep)

    assert pace.take(1_000) == 0.0  # a full bucket: one second's worth at once
    assert pace.take(500) == pytest.approx(0.5)
    time.now += 2.0  # idle: the bucket refills, up to its capacity only
    assert pace.take(1_000) == 0.0
    assert pace.take(3_000) == pytest.approx(3.0)  # a page beyond capacity is paid after it
    assert pace.slept_s == pytest.approx(3.5)


def test_no_rate_is_no_pace() -> None:
    assert job_pace(0) is None
    pace = job_pace(250)
    assert pace is not None and pace.wallets_per_s == 250


def test_the_scan_waits_for_its_pace_between_pages(stores: Stores) -> None:
    for _ in range(12):
        stores.mongo.add_credit(new_key(), 100, tx())
    time = FakeTime()
    pace = WalletPace(4, clock=time.clock, sleep=time.sleep)

    pages = list(LegacyScan(stores.mongo.database, pace=pace).wallet_batches(4))

    assert [len(page) for page in pages] == [4, 4, 4]
    assert time.sleeps == pytest.approx([1.0, 1.0])  # (12 - 4 in the bucket) / 4 a second


def test_a_paced_reconciliation_compares_every_wallet_and_took_its_time(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    for _ in range(10):
        stores.phased.add_credit(new_key(), 100, tx())
    time = FakeTime()
    pace = WalletPace(5, clock=time.clock, sleep=time.sleep)
    scan = LegacyScan(stores.scan.database, pace=pace)

    run = Reconciliation(scan, stores.outbox, stores.batches).run(page_size=5)

    assert (run.checked, run.matched) == (10, 10)
    assert pace.slept_s == pytest.approx(1.0)


def test_the_runtime_paces_its_jobs_scan_only(stores: Stores) -> None:
    assert stores.runtime.backfill().scan.pace is None  # the setting's default: no limit
    runtime = dataclasses.replace(stores.runtime, job_wallets_per_s=2_000)

    for job in (runtime.backfill(), runtime.reconciliation()):
        assert job.scan.pace is not None and job.scan.pace.wallets_per_s == 2_000
    assert runtime.legacy.pace is None  # support's re-checks and the phase change: unpaced
