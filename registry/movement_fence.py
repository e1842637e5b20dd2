"""The movement fence: how the event collector knows that a wallet's outbox rows it sees are
all of the wallet's movements up to a point of TigerBeetle's order (PostgreSQL).

A TigerBeetle store write sends its transfers and then commits its registry and outbox rows.
Two writes to one wallet may commit in the other order than TigerBeetle took them, and a
collector reading between the two commits would emit the later movement first. So every
store write holds its wallets' fence shared, from before it sends anything to TigerBeetle
until its rows committed; the collector, once it has read a batch of rows, takes each of
their wallets' fence exclusively and lets it go at once (`wait_for_writes`). A write that was
sent before the collector's read has committed by then: any row TigerBeetle ordered before
a row the collector read is visible to the collector's next read. A write that takes the
fence later sends later, and TigerBeetle orders it after everything the collector read.

Session advisory locks (as the phase's write lock, `flags.write_lock`), so a write holds no
database transaction open across its round trip to TigerBeetle, on FENCE_BUCKETS keys: a
wallet's key is its registry id modulo that, and two wallets sharing one only make the
collector wait for both. SQLite (development) has no advisory locks: there, the fence is
nothing and the collector waits EVENTS_STORE_SETTLE_S instead (events/collector.py).

A write takes all of its wallets' buckets in one statement and never asks for more; while
the collector waits for one, a write asking for that bucket queues behind it. If that write
already holds a row lock the writer being waited for needs, PostgreSQL's deadlock detector
ends it, most often in the collector (the first to wait), whose run is retried by the next.

The copy back's passes before a step back's pause (migration/copy_back.py) wait the same
way for every bucket (`wait_for_every_write`): once they return, every event TigerBeetle
took before a row read earlier has its row committed, so a pass can copy up to that row
without a later write slipping in before it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType

from django.db import Error, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper

log = logging.getLogger(__name__)

FENCE_BUCKETS = 256
# The two-key advisory locks' first key (a constant naming the fence; the phase's write lock
# uses the one-key form, a separate key space).
FENCE_LOCK_CLASS = 7_101_025


def fence_available() -> bool:
    return connection.vendor == "postgresql"


def _buckets(wallet_pks: Iterable[int]) -> list[int]:
    return sorted({int(pk) % FENCE_BUCKETS for pk in wallet_pks})


class MovementFence:
    """Held by one store write (`with MovementFence() as fence:`) around everything from its
    first send to TigerBeetle to its rows' commit; `cover` adds the wallets it writes, before
    it sends their transfers. Released when the block ends, after the block's own
    transaction committed (open the fence outside it)."""

    def __init__(self) -> None:
        self._held: set[int] = set()

    def __enter__(self) -> MovementFence:
        return self

    def cover(self, wallet_pks: Iterable[int]) -> None:
        if not fence_available():
            return
        wanted = [bucket for bucket in _buckets(wallet_pks) if bucket not in self._held]
        if not wanted:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock_shared(%s, bucket) FROM unnest(%s::int[]) AS bucket",
                [FENCE_LOCK_CLASS, wanted],
            )
        self._held.update(wanted)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._held:
            return
        held, self._held = sorted(self._held), set()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock_shared(%s, bucket) FROM unnest(%s::int[]) AS bucket",
                    [FENCE_LOCK_CLASS, held],
                )
        except Error:  # a database error, or a connection already closed (InterfaceError)
            # The session goes, and its locks with it: a connection kept for the next
            # request would hold them, and the collector would wait for it.
            log.warning("movement fence not released on this connection; closing it")
            connection.close()


def wait_for_writes(wallet_pks: Iterable[int]) -> None:
    """Return once every store write to these wallets that held the fence when this was
    called has committed (or given up). Takes each wallet's fence exclusively and lets it go
    at once, one at a time, so it never holds one while it waits for another."""
    if not fence_available():
        return
    buckets = _buckets(wallet_pks)
    if not buckets:
        return
    with connection.cursor() as cursor:
        _wait_for_buckets(cursor, buckets)


def wait_for_every_write(*, timeout_s: float) -> bool:
    """True once every store write that held the fence when this was called has committed
    (or given up), whatever its wallets; False when one still held it after about
    `timeout_s`, or PostgreSQL ended the wait to break a deadlock. For the copy back's
    passes before a step back's pause (migration/copy_back.py), which copy what the pause
    would otherwise copy when this answers False."""
    assert timeout_s > 0
    if not fence_available():
        return True
    try:
        # lock_timeout for this wait only: the savepoint's SET LOCAL goes with it.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            (previous,) = cursor.fetchone()
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)",
                [f"{max(1, round(timeout_s * 1000))}ms"],
            )
            _wait_for_buckets(cursor, list(range(FENCE_BUCKETS)))
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    except OperationalError:  # lock_timeout, or a deadlock broken
        return False
    return True


def _wait_for_buckets(cursor: CursorWrapper, buckets: list[int]) -> None:
    """Each bucket taken exclusively and let go at once, one at a time, so the wait never
    holds one bucket while it waits for another."""
    cursor.execute(
        "SELECT pg_advisory_lock(%s, bucket), pg_advisory_unlock(%s, bucket) "
        "FROM unnest(%s::int[]) AS bucket",
        [FENCE_LOCK_CLASS, FENCE_LOCK_CLASS, buckets],
    )
