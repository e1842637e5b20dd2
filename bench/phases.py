"""Where a job's time goes: the wall time spent waiting on each service, by phase.

While `CLOCK.measuring()` it adds up
- MongoDB: every command's round trip (pymongo command monitoring, `duration_micros`),
- the registry database: every SQL statement (Django's `connection.execute_wrapper`),
- TigerBeetle: every backend call, by operation (`TimedBackend` around the store's backend;
  on the embedded engine its SQL is part of the call, not of the registry's);
and the rest of the job's wall time is its own Python work. Nothing in the application
changes: the clock only listens.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from pymongo import monitoring

from ledger.backends import LedgerBackend

BACKGROUND = " (background thread)"  # a phase that overlaps the job's own thread


class Phases:
    """Seconds and calls per phase of one measured job.

    A phase timed on another thread than the job's (the backfill reads MongoDB and writes
    TigerBeetle from threads of its own) is kept apart, marked BACKGROUND: it overlaps the
    job's thread, so it is not part of the sum the job's own work is the rest of. What the
    job's thread spent waiting for those threads is a phase of its own (`waits`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def breakdown(
        self, total_s: float, waits: dict[str, float] | None = None
    ) -> list[tuple[str, int, float, float]]:
        """(phase, calls, seconds, share of total), the job's own work last."""
        seconds = {**self.seconds, **(waits or {})}
        rows = [
            (phase, self.calls.get(phase, 0), phase_s, phase_s / total_s)
            for phase, phase_s in sorted(seconds.items(), key=lambda item: -item[1])
        ]
        own_s = total_s - sum(s for phase, s in seconds.items() if not phase.endswith(BACKGROUND))
        rows.append(("the job's own Python work (the rest)", 0, own_s, own_s / total_s))
        return rows


class PhaseClock:
    """Adds to the current `Phases` while `measuring()`; ignores everything outside it."""

    def __init__(self) -> None:
        self.current: Phases | None = None
        self._local = threading.local()
        self._lock = threading.Lock()  # phases are added from several threads

    @property
    def in_ledger_call(self) -> bool:
        """The embedded engine's own SQL counts as its call's time (per thread)."""
        return getattr(self._local, "in_ledger_call", False)

    @in_ledger_call.setter
    def in_ledger_call(self, value: bool) -> None:
        self._local.in_ledger_call = value

    def add(self, phase: str, elapsed_s: float) -> None:
        if threading.current_thread() is not threading.main_thread():
            phase += BACKGROUND
        with self._lock:
            if self.current is not None:
                self.current.seconds[phase] += elapsed_s
                self.current.calls[phase] += 1

    @contextmanager
    def measuring(self, phases: Phases | None = None) -> Iterator[Phases]:
        """Adds to `phases` (a fresh one if None) until the block ends."""
        self.current = phases = phases if phases is not None else Phases()
        try:
            with connection.execute_wrapper(self._time_sql):
                yield phases
        finally:
            self.current = None

    def _time_sql(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if self.in_ledger_call:
            return execute(sql, *args)
        started = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            self.add(f"registry SQL ({connection.vendor})", time.perf_counter() - started)


CLOCK = PhaseClock()


class _MongoTimer(monitoring.CommandListener):
    """Registered once, before any MongoClient exists; counts only while CLOCK is active."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        CLOCK.add(f"MongoDB {event.command_name}", event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        CLOCK.add(f"MongoDB {event.command_name}", event.duration_micros / 1e6)


monitoring.register(_MongoTimer())


class TimedBackend:
    """A ledger backend that times each call on CLOCK, then answers as the wrapped one."""

    def __init__(self, inner: LedgerBackend) -> None:
        self.inner = inner
        self.callable_from_any_thread = getattr(inner, "callable_from_any_thread", False)

    def __getattr__(self, operation: str) -> Any:
        call = getattr(self.inner, operation)
        if operation == "close":
            return call

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            CLOCK.in_ledger_call = True
            try:
                answer = call(*args)
            finally:
                CLOCK.in_ledger_call = False
                CLOCK.add(f"TigerBeetle {operation}", time.perf_counter() - started)
            if operation.startswith("begin_"):
                return timed_wait(operation.removeprefix("begin_"), answer)
            return answer

        return timed


def timed_wait(operation: str, answer: Callable[[], Any]) -> Callable[[], Any]:
    """The wait for a request started earlier (`begin_*`): only what the caller did not
    overlap with other work is counted."""

    def wait() -> Any:
        started = time.perf_counter()
        try:
            return answer()
        finally:
            CLOCK.add(
                f"TigerBeetle {operation} (waited after overlap)", time.perf_counter() - started
            )

    return wait


def print_breakdown(
    title: str,
    total_s: float,
    phases: Phases,
    per: int = 1,
    waits: dict[str, float] | None = None,
) -> None:
    """The phases' calls and time; with `per` > 1, per operation (calls and ms). `waits`:
    the job's thread waiting for its own background threads, by what it waited for."""
    if per > 1:
        print(f"\n{title}: where the time goes, per operation ({total_s / per * 1000:.2f} ms)")
        print(f"{'phase':<52} {'calls':>8} {'ms':>9} {'share':>7}")
        for phase, calls, seconds, share in phases.breakdown(total_s, waits):
            shown_calls = f"{calls / per:>8.2f}" if calls else f"{'':>8}"
            print(f"{phase:<52} {shown_calls} {seconds / per * 1000:>9.3f} {share:>6.1%}")
        return
    print(f"\n{title}: where the time goes ({total_s:.2f} s)")
    print(f"{'phase':<52} {'calls':>8} {'seconds':>9} {'share':>7}")
    for phase, calls, seconds, share in phases.breakdown(total_s, waits):
        shown_calls = f"{calls:>8}" if calls else f"{'':>8}"
        print(f"{phase:<52} {shown_calls} {seconds:>9.3f} {share:>6.1%}")
