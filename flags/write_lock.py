"""The write lock: how a phase change knows that no write which read the old phase still runs;
and the share fence: how a change of the dual-write share knows that no mirror run which read
the old share still runs.

Every wallet write holds the lock shared from before it reads the phase until its store call
has returned. A phase change that moves where money is written first pauses writes (the
`wallet_writes_paused` flag, read from the database by every process), then takes the lock
exclusively: it gets it only once every write in flight has finished, and writes that come
later read the pause and answer 503 `writes_paused`. So the drain or copy-back that follows
sees every write the old phase acknowledged, and none can land after it.

The lock must span processes (gunicorn workers, the shell running `manage.py migration_phase`)
and not depend on the cache backend:
- PostgreSQL: a session advisory lock (shared for writes, exclusive for the phase change), so
  it also spans machines;
- SQLite (one machine by nature): `flock` on a file beside the database. `flock`, not `lockf`:
  flock locks belong to the open file, so threads of one process exclude each other too.

The share fence is the same kind of lock under another key (another file): every mirror run
holds it shared from its read of the dual-write share until it has applied, or set aside,
what it read; a change of the share holds it exclusively while it releases the entries of
the clients it takes in and commits the new share. So a mirror run sees the share and the
outbox either both before the change or both after it (`migration.mirror`).

A backfill page whose imported timestamps a mirror run's transfers raced past holds the share
fence exclusively too, for its next attempts (`mirror_runs_paused`, `migration.page_import`):
TigerBeetle refuses an imported event older than the newest one it holds, and at a million
wallets under traffic one page lost that race to the mirror on every attempt of a run. The
mirror already holds the fence for each run, so this costs its runs nothing more.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.db import DatabaseError, connection

log = logging.getLogger(__name__)

# The name the lock is known by outside this process, in its advisory lock key and its lock
# file. It keeps the word it was first deployed under: a process of the previous release and
# one of this release must take the same lock while a deploy rolls, or a phase change would
# not wait for the other's writes.
DEPLOYED_NAME = "write-gate"
POLL_INTERVAL_S = 0.005


def advisory_key(name: str) -> int:
    """An advisory lock's key (a signed bigint; advisory locks are per database) from the
    name the lock is known by outside this process."""
    return int.from_bytes(hashlib.sha256(f"wallet-{name}".encode()).digest()[:8], signed=True)


ADVISORY_LOCK_KEY = advisory_key(DEPLOYED_NAME)
# The share fence's two locks (advisory lock keys hashed from these names; lock files named
# by them): the fence itself, and the intent a change of the share announces first.
SHARE_FENCE_NAME = "dual-write-share-fence"
SHARE_INTENT_NAME = "dual-write-share-intent"


class WritesStillRunning(TimeoutError):
    """Writes that read the old phase did not finish within the phase change's wait."""


class MirrorRunsStillRunning(TimeoutError):
    """Mirror runs that read the old dual-write share did not finish within the wait."""


@contextmanager
def write_admitted() -> Iterator[bool]:
    """Hold the lock shared for one write; yields False when a phase change holds it (the
    write must then answer writes_paused)."""
    if connection.vendor == "postgresql":
        with _advisory_shared(ADVISORY_LOCK_KEY, timeout_s=0) as admitted:
            yield admitted
    else:
        with _flock(fcntl.LOCK_SH, timeout_s=0) as admitted:
            yield admitted


@contextmanager
def writes_drained(timeout_s: float) -> Iterator[None]:
    """Hold the lock exclusively: waits until no write is in flight (at most `timeout_s`,
    else WritesStillRunning); while held, no write runs."""
    if connection.vendor == "postgresql":
        manager = _advisory_exclusive(timeout_s)
    else:
        manager = _flock(fcntl.LOCK_EX, timeout_s=timeout_s)
    with manager as acquired:
        if not acquired:
            raise WritesStillRunning(f"wallet writes still running after {timeout_s:g} s")
        yield


@contextmanager
def mirror_run_fenced(timeout_s: float) -> Iterator[bool]:
    """Hold the share fence shared for one mirror run; yields False when a change of the
    dual-write share kept it out for longer than `timeout_s` (the run then does nothing).
    A run first passes the change's intent lock, so a change waiting for the runs in flight
    is not overtaken by new ones (the fence alone could be held by overlapping runs without
    a gap, and the change would never get it)."""
    deadline = time.monotonic() + timeout_s
    with ExitStack() as held:
        admitted = False
        with _share_lock(exclusive=False, name=SHARE_INTENT_NAME, timeout_s=timeout_s) as passed:
            if passed:
                remaining_s = max(0.0, deadline - time.monotonic())
                admitted = held.enter_context(
                    _share_lock(exclusive=False, name=SHARE_FENCE_NAME, timeout_s=remaining_s)
                )
        yield admitted  # the intent lock is released: only the fence is held for the run


@contextmanager
def mirror_runs_drained(timeout_s: float) -> Iterator[None]:
    """Hold the share fence exclusively for a change of the share: waits until no mirror run
    is in flight (at most `timeout_s` in all, else MirrorRunsStillRunning); while held, no
    mirror run starts."""
    with mirror_runs_paused(timeout_s) as held:
        if not held:
            raise MirrorRunsStillRunning(f"mirror runs still running after {timeout_s:g} s")
        yield


@contextmanager
def mirror_runs_paused(timeout_s: float) -> Iterator[bool]:
    """Hold the share fence exclusively (a change of the share; a backfill page trying again
    what a mirror run raced past): announces itself (the intent lock, which keeps new runs
    from starting), then waits until no mirror run is in flight; yields False when the runs
    in flight outlasted `timeout_s` in all."""
    deadline = time.monotonic() + timeout_s
    with _share_lock(exclusive=True, name=SHARE_INTENT_NAME, timeout_s=timeout_s) as announced:
        remaining_s = max(0.0, deadline - time.monotonic())
        with _share_lock(exclusive=True, name=SHARE_FENCE_NAME, timeout_s=remaining_s) as held:
            yield announced and held


@contextmanager
def one_run_at_a_time(name: str) -> Iterator[bool]:
    """An exclusive lock across processes, never waited for: yields False while another
    process holds it (a periodic job whose runs must not pile up on each other when one
    outlasts its interval: the run that finds it held does nothing)."""
    with _share_lock(exclusive=True, name=name, timeout_s=0) as acquired:
        yield acquired


@contextmanager
def _share_lock(*, exclusive: bool, name: str, timeout_s: float) -> Iterator[bool]:
    """One of the share fence's locks (by name), waiting at most `timeout_s`."""
    if connection.vendor == "postgresql":
        key = advisory_key(name)
        if exclusive:
            manager = _advisory_exclusive(timeout_s, key=key)
        else:
            manager = _advisory_shared(key, timeout_s=timeout_s)
    else:
        manager = _flock(fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout_s, name=name)
    with manager as acquired:
        yield acquired


# --- PostgreSQL ---------------------------------------------------------------------------


def _select(sql: str, key: int = ADVISORY_LOCK_KEY) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(sql, [key])
        return bool(cursor.fetchone()[0])


def _unlock(sql: str, key: int = ADVISORY_LOCK_KEY) -> None:
    try:
        _select(sql, key)
    except DatabaseError:
        # The connection is broken (e.g. an aborted transaction). The lock goes with the
        # session, so the session goes now: a connection kept for the next request would
        # hold the lock until it ages out, and every phase change would wait for it.
        log.warning("write lock not released on this connection; closing it to free the lock")
        connection.close()


@contextmanager
def _advisory_shared(key: int, *, timeout_s: float) -> Iterator[bool]:
    deadline = time.monotonic() + timeout_s
    admitted = _select("SELECT pg_try_advisory_lock_shared(%s)", key)
    while not admitted and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        admitted = _select("SELECT pg_try_advisory_lock_shared(%s)", key)
    try:
        yield admitted
    finally:
        if admitted:
            _unlock("SELECT pg_advisory_unlock_shared(%s)", key)


@contextmanager
def _advisory_exclusive(timeout_s: float, key: int = ADVISORY_LOCK_KEY) -> Iterator[bool]:
    deadline = time.monotonic() + timeout_s
    acquired = _select("SELECT pg_try_advisory_lock(%s)", key)
    while not acquired and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        acquired = _select("SELECT pg_try_advisory_lock(%s)", key)
    try:
        yield acquired
    finally:
        if acquired:
            _unlock("SELECT pg_advisory_unlock(%s)", key)


# --- SQLite (and any other single-machine database) ---------------------------------------


def lock_path(name: str = DEPLOYED_NAME) -> Path:
    """The lock file beside the database file; per process for an in-memory database."""
    database = str(connection.settings_dict["NAME"])
    if database == ":memory:" or "mode=memory" in database:
        return Path(tempfile.gettempdir()) / f"wallet-{name}-{os.getpid()}"
    return Path(f"{database}.{name}")


@contextmanager
def _flock(mode: int, timeout_s: float, name: str = DEPLOYED_NAME) -> Iterator[bool]:
    descriptor = os.open(lock_path(name), os.O_RDWR | os.O_CREAT, 0o666)  # umask applies
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    acquired = False
                    break
                time.sleep(POLL_INTERVAL_S)
        yield acquired
    finally:
        os.close(descriptor)  # closing the file releases its lock
