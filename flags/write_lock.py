"""The write lock: how a phase change knows that no write which read the old phase still runs.

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
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import DatabaseError, connection

log = logging.getLogger(__name__)

# The name the lock is known by outside this process, in its advisory lock key and its lock
# file. It keeps the word it was first deployed under: a process of the previous release and
# one of this release must take the same lock while a deploy rolls, or a phase change would
# not wait for the other's writes.
DEPLOYED_NAME = "write-gate"
# The advisory lock's key (a signed bigint); advisory locks are per database.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(f"wallet-{DEPLOYED_NAME}".encode()).digest()[:8], signed=True
)
POLL_INTERVAL_S = 0.005


class WritesStillRunning(TimeoutError):
    """Writes that read the old phase did not finish within the phase change's wait."""


@contextmanager
def write_admitted() -> Iterator[bool]:
    """Hold the lock shared for one write; yields False when a phase change holds it (the
    write must then answer writes_paused)."""
    if connection.vendor == "postgresql":
        with _advisory_shared() as admitted:
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


# --- PostgreSQL ---------------------------------------------------------------------------


def _select(sql: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(sql, [ADVISORY_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _unlock(sql: str) -> None:
    try:
        _select(sql)
    except DatabaseError:
        # The connection is broken (e.g. an aborted transaction). The lock goes with the
        # session, so the session goes now: a connection kept for the next request would
        # hold the lock until it ages out, and every phase change would wait for it.
        log.warning("write lock not released on this connection; closing it to free the lock")
        connection.close()


@contextmanager
def _advisory_shared() -> Iterator[bool]:
    admitted = _select("SELECT pg_try_advisory_lock_shared(%s)")
    try:
        yield admitted
    finally:
        if admitted:
            _unlock("SELECT pg_advisory_unlock_shared(%s)")


@contextmanager
def _advisory_exclusive(timeout_s: float) -> Iterator[bool]:
    deadline = time.monotonic() + timeout_s
    acquired = _select("SELECT pg_try_advisory_lock(%s)")
    while not acquired and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        acquired = _select("SELECT pg_try_advisory_lock(%s)")
    try:
        yield acquired
    finally:
        if acquired:
            _unlock("SELECT pg_advisory_unlock(%s)")


# --- SQLite (and any other single-machine database) ---------------------------------------


def lock_path() -> Path:
    """The lock file beside the database file; per process for an in-memory database."""
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name:
        return Path(tempfile.gettempdir()) / f"wallet-{DEPLOYED_NAME}-{os.getpid()}"
    return Path(f"{name}.{DEPLOYED_NAME}")


@contextmanager
def _flock(mode: int, timeout_s: float) -> Iterator[bool]:
    descriptor = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o666)  # umask applies
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
