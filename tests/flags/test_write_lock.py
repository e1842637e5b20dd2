"""The write lock: a phase change that holds it has no write running beside it, and waits
for the writes in flight (threads here; processes in test_phase_change_across_processes)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from flags.write_lock import (
    ADVISORY_LOCK_KEY,
    MirrorRunsStillRunning,
    WritesStillRunning,
    lock_path,
    mirror_run_fenced,
    mirror_runs_drained,
    mirror_runs_paused,
    write_admitted,
    writes_drained,
)

pytestmark = pytest.mark.django_db(transaction=True)
HOLD_S = 0.3


def in_thread(work: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        finally:
            connection.close()  # this thread's own connection (and its advisory locks)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def write_in_flight() -> Iterator[threading.Event]:
    """A write holding the lock for HOLD_S; the event is set once it holds it."""
    holding = threading.Event()

    def write() -> None:
        with write_admitted() as admitted:
            assert admitted
            holding.set()
            time.sleep(HOLD_S)

    thread = in_thread(write)
    assert holding.wait(5)
    yield holding
    thread.join(5)


def test_a_write_is_not_admitted_while_a_phase_change_holds_the_lock() -> None:
    answers: list[bool] = []

    def write() -> None:
        with write_admitted() as admitted:
            answers.append(admitted)

    with writes_drained(timeout_s=1):
        in_thread(write).join(5)

    in_thread(write).join(5)
    assert answers == [False, True]


def test_a_phase_change_waits_for_the_write_in_flight(write_in_flight: threading.Event) -> None:
    started = time.monotonic()
    with writes_drained(timeout_s=5):
        waited_s = time.monotonic() - started
    assert waited_s >= HOLD_S / 2


def test_a_phase_change_gives_up_when_a_write_outlasts_its_wait(
    write_in_flight: threading.Event,
) -> None:
    with pytest.raises(WritesStillRunning), writes_drained(timeout_s=0.05):
        pass


def test_writes_run_side_by_side() -> None:
    with write_admitted() as first:
        answers: list[bool] = []

        def write() -> None:
            with write_admitted() as admitted:
                answers.append(admitted)

        in_thread(write).join(5)
    assert first and answers == [True]


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the advisory lock is PostgreSQL's session's"
)
def test_a_write_whose_transaction_failed_does_not_keep_the_lock_on_its_connection() -> None:
    # Connections outlive requests (CONN_MAX_AGE): one that kept the shared lock after a
    # failed write would hold every later phase change back until it aged out.
    def failed_write() -> None:
        with pytest.raises(DatabaseError), transaction.atomic(), write_admitted() as admitted:
            assert admitted
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")

    failed_write()

    drained: list[bool] = []

    def phase_change() -> None:
        with writes_drained(timeout_s=1):
            drained.append(True)

    in_thread(phase_change).join(5)
    assert drained == [True]


def test_the_lock_keeps_the_names_it_was_deployed_under(monkeypatch: pytest.MonkeyPatch) -> None:
    # A process of the previous release and one of this release, side by side while a deploy
    # rolls, must take the same lock: the same advisory lock key, the same lock file.
    assert ADVISORY_LOCK_KEY == -7460420809113865100  # SHA-256 of b"wallet-write-gate"
    monkeypatch.setitem(connection.settings_dict, "NAME", "/srv/wallet/db.sqlite3")
    assert lock_path() == Path("/srv/wallet/db.sqlite3.write-gate")
    monkeypatch.setitem(connection.settings_dict, "NAME", ":memory:")
    assert lock_path() == Path(tempfile.gettempdir()) / f"wallet-write-gate-{os.getpid()}"


ANNOUNCE_TRIES_MAX = 1000


@contextmanager
def mirror_run_in_flight() -> Iterator[threading.Event]:
    """A mirror run holding the share fence in a thread of its own until the event given is
    set (or the block ends)."""
    started, may_end = threading.Event(), threading.Event()

    def mirror_run() -> None:
        with mirror_run_fenced(5) as admitted:
            assert admitted
            started.set()
            may_end.wait(10)

    thread = in_thread(mirror_run)
    assert started.wait(10)
    try:
        yield may_end
    finally:
        may_end.set()
        thread.join(10)


def new_runs_kept_out() -> bool:
    """Whether new mirror runs are kept out, tried until they are (an exclusive holder
    announces itself before it waits for the runs in flight)."""
    for _ in range(ANNOUNCE_TRIES_MAX):
        with mirror_run_fenced(0) as admitted:
            if not admitted:
                return True
        time.sleep(0.005)
    return False


def test_a_share_change_waits_for_the_mirror_run_in_flight_and_no_new_run_overtakes_it() -> None:
    change_made = threading.Event()

    def share_change() -> None:
        with mirror_runs_drained(10):
            change_made.set()

    with mirror_run_in_flight() as run_may_end:
        changing = in_thread(share_change)
        assert new_runs_kept_out()
        assert not change_made.is_set()  # it waits for the run in flight
        run_may_end.set()
        changing.join(10)
    assert change_made.is_set()


def test_a_share_change_is_refused_when_a_mirror_run_outlasts_its_wait() -> None:
    with mirror_run_in_flight(), pytest.raises(MirrorRunsStillRunning), mirror_runs_drained(0.05):
        pass


def test_a_page_pausing_the_mirror_waits_for_the_run_in_flight_and_keeps_new_ones_out() -> None:
    paused, page_may_end = threading.Event(), threading.Event()

    def page_retry() -> None:
        with mirror_runs_paused(10) as held:
            if held:
                paused.set()
                page_may_end.wait(10)

    with mirror_run_in_flight() as run_may_end:
        retrying = in_thread(page_retry)
        assert new_runs_kept_out()
        assert not paused.is_set()  # it waits for the run in flight
        run_may_end.set()
        assert paused.wait(10)
    with mirror_run_fenced(0) as admitted:
        assert not admitted  # no new run while the page tries
    page_may_end.set()
    retrying.join(10)
    with mirror_run_fenced(0) as admitted:
        assert admitted


def test_a_backfill_page_outwaited_by_a_mirror_run_is_told_the_mirror_is_not_paused() -> None:
    with mirror_run_in_flight(), mirror_runs_paused(0.05) as held:
        assert not held
