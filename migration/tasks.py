"""Celery tasks of the migration: the mirror, shadow reads, backfill and reconciliation (and
the ledger backend's health check).

Every task has an explicit name, kept from when they lived in `ledger/tasks.py` ("ledger.*"):
messages already queued, and the beat schedule, route by name, never by module.

Each task works on the process's runtime (`migration.runtime.process_runtime`), so a worker
keeps one MongoDB pool and one TigerBeetle client per process. The process wiring
(`wallet_site.wiring`, which also queues these tasks) builds and installs that runtime at
start-up: this module imports neither the wiring nor the service.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict
from typing import Any

from celery import shared_task

from domain.wallets import WalletBalance
from flags.phases import current_state
from ledger import metrics
from ledger.backends import get_ledger_backend
from migration import alerts
from migration import guard as guard_check
from migration.copy_back import copy_back_due, copy_back_tigerbeetle_writes
from migration.models import ReconciliationRun
from migration.routing import key_from_dict
from migration.runtime import process_runtime
from migration.shadow import compare_shadow_read as compare

log = logging.getLogger(__name__)


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


def _report(report: Any) -> dict[str, Any]:
    for result in (
        "applied",
        "already_applied",
        "covered",
        "parked",
        "failed_transiently",
        "outside_share",
    ):
        metrics.MIRROR_ENTRIES.labels(result).inc(getattr(report, result))
    return {
        "applied": report.applied,
        "already_applied": report.already_applied,
        "covered": report.covered,
        "waiting_for_backfill": report.waiting_for_backfill,
        "parked": report.parked,
        "failed_transiently": report.failed_transiently,
        "outside_share": report.outside_share,
    }


# The tasks queued from a request keep no result (`ignore_result`): with a result backend,
# queueing also subscribes to the task's result there, and a result backend that is down made
# each queueing block about 19 s and then fail (the fault matrix, tests/faults/). Their
# reports are counted in the metrics instead.
@shared_task(name="ledger.mirror_wallet", ignore_result=True)
def mirror_wallet(key: dict[str, str | None]) -> dict[str, Any]:
    """Queued right after a MongoDB write: mirror that wallet's pending entries."""
    if not current_state().dual_write:
        return {"skipped": "dual write is off"}
    return _report(process_runtime().mirror().drain(keys=[key_from_dict(key)]))


@shared_task(name="ledger.mirror_pending", ignore_result=True)
def mirror_pending() -> dict[str, Any]:
    """Queued right after a batch that wrote to many wallets: mirror every pending entry."""
    if not current_state().dual_write:
        return {"skipped": "dual write is off"}
    return _report(process_runtime().mirror().drain())


@shared_task(name="ledger.sweep_outbox")
def sweep_outbox() -> dict[str, Any]:
    """Celery beat: mirror whatever no on-commit task applied (crashes, broker outages).

    It is also the safety net for writes made outside the phased store's write lock (a
    process pinned to one store, a script): a MongoDB write landing after TigerBeetle became
    the only store is still mirrored (dual_write stays on in phase 4), and a TigerBeetle write
    landing after phase 4 was left is copied back.
    """
    runtime = process_runtime()
    state = current_state()
    result: dict[str, Any] = {"skipped": "dual write is off"}
    if state.dual_write:
        result = _report(runtime.mirror().drain())
    if not state.tigerbeetle_only and copy_back_due():
        result["copied_back"] = copy_back_tigerbeetle_writes(runtime.mongo, runtime.batches)
    depth = runtime.outbox.depth()
    metrics.OUTBOX_DEPTH.labels("pending").set(depth.pending)
    metrics.OUTBOX_DEPTH.labels("parked").set(depth.parked)
    metrics.OUTBOX_DEPTH.labels("outside_share").set(depth.outside_share)
    metrics.MIRROR_LAG_SECONDS.set(depth.oldest_pending_age_s)
    return {**result, "depth": asdict(depth)}


@shared_task(name="ledger.sweep_expired_holds")
def sweep_expired_holds() -> dict[str, int]:
    """Celery beat: release MongoDB's holds past their expiry in wallets nobody wrote to since
    (TigerBeetle expires its own). Any phase: a hold MongoDB holds is MongoDB's to expire."""
    return {"wallets": process_runtime().mongo.sweep_expired_holds()}


@shared_task(name="ledger.compare_shadow_read", ignore_result=True)
def compare_shadow_read(
    key: dict[str, str | None],
    fields_minor: list[int],
    wallet_seq: int,
    mongo_latency_us: int | None = None,
    held_minor: int = 0,
) -> str:
    """`held_minor`: the read's held amount (0 in messages queued before holds were compared:
    their credit was the posted one)."""
    credit, debit, historical = fields_minor
    balance = WalletBalance(key_from_dict(key), credit, debit, historical, held_minor=held_minor)
    runtime = process_runtime()
    comparison = compare(
        balance,
        wallet_seq,
        runtime.outbox,
        runtime.tigerbeetle,
        runtime.batches,
        mongo_latency_us,
    )
    return comparison.outcome


@shared_task(name="ledger.backfill")
def backfill(page_size: int = 2000) -> dict[str, Any]:
    """Import every legacy wallet (idempotent: a retried or repeated task skips done ones)."""
    report = process_runtime().backfill().run(page_size=page_size, progress=False)
    return {
        "scanned": report.scanned,
        "imported": report.imported,
        "already_imported": report.already_imported,
        "outside_share": report.outside_share,
        "failed": report.failed[:100],
        "duration_s": round(report.duration_s, 3),
    }


@shared_task(name="ledger.reconcile")
def reconcile(triggered_by: str = "schedule", run_id: int | None = None) -> dict[str, Any]:
    """Celery beat (RECONCILE_INTERVAL_S): compare every wallet in both stores. `run_id`: the
    queued run a person asked for (its row shows them it is queued, then its progress)."""
    queued = None
    if run_id is not None:
        queued = ReconciliationRun.objects.filter(pk=run_id, finished_at__isnull=True).first()
        if queued is None:
            return {"skipped": f"run {run_id} is gone or finished"}
    run = process_runtime().reconciliation().run(triggered_by=triggered_by, queued=queued)
    return {
        "run_id": run.pk,
        "checked": run.checked,
        "matched": run.matched,
        "mismatched": run.mismatched,
        "duration_s": run.duration_s,
    }


@shared_task(name="ledger.guard")
def guard() -> dict[str, Any]:
    """Celery beat (GUARD_INTERVAL_S, 60 s): the guard's check (`migration.guard`): in phase 3
    a threshold crossed steps the read rollout back, audited as the guard; elsewhere it
    alerts and moves nothing. Then the open alerts the webhook has not taken are sent again."""
    runtime = process_runtime()
    row = guard_check.check(mongo=runtime.mongo, batches=runtime.batches, outbox=runtime.outbox)
    delivered = alerts.deliver_unsent()  # alerts the webhook did not take when they opened
    return {
        "alerts_delivered": delivered,
        "check_id": row.pk,
        "phase": row.phase,
        "action": row.action,
        "breaches": row.breaches,
        "outcome": row.outcome,
    }


def queue_share_intake() -> None:
    """After a raise of the dual-write share (`change_phase`'s `on_share_raised`): the
    backfill imports the legacy wallets of the clients it took in, and a sweep mirrors
    their released entries now rather than at the next beat. Without a broker the sweeper
    still mirrors them; the backfill is then started from the phase page."""
    try:
        backfill.delay()
        sweep_outbox.delay()
    except Exception:
        log.warning("backfill or sweep not queued after the dual-write share rose; start them")
