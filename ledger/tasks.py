"""Celery tasks of the ledger app."""

from __future__ import annotations

import os
import socket
import time

from celery import shared_task

from ledger.backends import get_ledger_backend


@shared_task(name="ledger.check_ledger_backend")
def check_ledger_backend() -> dict[str, object]:
    """Prove a worker can reach the ledger backend: one lookup round trip, timed.

    Operations run it to check a deployed worker; CI runs it to prove the worker is real.
    """
    backend = get_ledger_backend()
    started_ns = time.perf_counter_ns()
    backend.lookup_accounts([1])
    return {
        "backend": type(backend).__name__,
        "round_trip_us": (time.perf_counter_ns() - started_ns) // 1000,
        "worker_pid": os.getpid(),
        "worker_host": socket.gethostname(),
    }
