"""Celery tasks of the migration: the mirror, shadow reads, backfill and reconciliation (and
the ledger backend's health check).

Every task has an explicit name, kept from when they lived in `ledger/tasks.py` ("ledger.*"):
messages already queued, and the beat schedule, route by name, never by module.

Each task builds on the process's stores, so a worker keeps one MongoDB pool and one
TigerBeetle client per process. The process wiring (`wallet_site.wiring`, which also queues
these tasks) installs where they find those stores at start-up (`use_process_stores`): this
module imports neither the wiring nor the service.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from celery import shared_task

from domain.wallets import WalletBalance
from flags.phases import current_state
from ledger import metrics
from ledger.backends import get_ledger_backend
from ledger.batches import LedgerBatches
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from migration.backfill import Backfill
from migration.legacy_scan import LegacyScan
from migration.mirror import Mirror
from migration.outbox import MirrorOutbox
from migration.phase_change import copy_back_due, copy_back_tigerbeetle_writes
from migration.reconciliation import Reconciliation
from migration.routing import key_from_dict
from migration.shadow import compare_shadow_read as compare

ProcessStores = Callable[[], tuple[MongoWalletStore, TigerBeetleWalletStore]]
_process_stores: ProcessStores | None = None


def use_process_stores(stores: ProcessStores) -> None:
    """Where the tasks find the process's MongoDB and TigerBeetle stores (called once, at
    start-up, by `wallet_site.wiring.install`)."""
    global _process_stores
    _process_stores = stores


def _mongo_store() -> MongoWalletStore:
    assert _process_stores is not None, "wallet_site.wiring.install() runs at start-up"
    return _process_stores()[0]


def _tigerbeetle_store() -> TigerBeetleWalletStore:
    assert _process_stores is not None, "wallet_site.wiring.install() runs at start-up"
    return _process_stores()[1]


def _tigerbeetle_batches() -> LedgerBatches:
    """The jobs' batch port over the process's TigerBeetle store's backend (one client)."""
    return LedgerBatches(_tigerbeetle_store().backend)


def _mongo_outbox() -> MirrorOutbox:
    return MirrorOutbox(_mongo_store().database)


def _legacy_scan() -> LegacyScan:
    return LegacyScan(_mongo_store().database)


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


def _mirror() -> Mirror:
    return Mirror(_mongo_outbox(), _tigerbeetle_batches())


def _report(report: Any) -> dict[str, Any]:
    for result in ("applied", "already_applied", "covered", "parked", "failed_transiently"):
        metrics.MIRROR_ENTRIES.labels(result).inc(getattr(report, result))
    return {
        "applied": report.applied,
        "already_applied": report.already_applied,
        "covered": report.covered,
        "waiting_for_backfill": report.waiting_for_backfill,
        "parked": report.parked,
        "failed_transiently": report.failed_transiently,
    }


@shared_task(name="ledger.mirror_wallet")
def mirror_wallet(key: dict[str, str | None]) -> dict[str, Any]:
    """Queued right after a MongoDB write: mirror that wallet's pending entries."""
    if not current_state().dual_write:
        return {"skipped": "dual write is off"}
    return _report(_mirror().drain(keys=[key_from_dict(key)]))


@shared_task(name="ledger.sweep_outbox")
def sweep_outbox() -> dict[str, Any]:
    """Celery beat: mirror whatever no on-commit task applied (crashes, broker outages).

    It is also the safety net for writes made outside the phased store's write gate (a
    process pinned to one store, a script): a MongoDB write landing after TigerBeetle became
    the only store is still mirrored (dual_write stays on in phase 4), and a TigerBeetle write
    landing after phase 4 was left is copied back.
    """
    state = current_state()
    result: dict[str, Any] = {"skipped": "dual write is off"}
    if state.dual_write:
        result = _report(_mirror().drain())
    if not state.tigerbeetle_only and copy_back_due():
        result["copied_back"] = copy_back_tigerbeetle_writes(_mongo_store(), _tigerbeetle_batches())
    depth = _mongo_outbox().depth()
    metrics.OUTBOX_DEPTH.labels("pending").set(depth.pending)
    metrics.OUTBOX_DEPTH.labels("parked").set(depth.parked)
    metrics.MIRROR_LAG_SECONDS.set(depth.oldest_pending_age_s)
    return {**result, "depth": asdict(depth)}


@shared_task(name="ledger.compare_shadow_read")
def compare_shadow_read(
    key: dict[str, str | None],
    fields_minor: list[int],
    wallet_seq: int,
    mongo_latency_us: int | None = None,
) -> str:
    credit, debit, historical = fields_minor
    balance = WalletBalance(key_from_dict(key), credit, debit, historical)
    comparison = compare(
        balance,
        wallet_seq,
        _mongo_outbox(),
        _tigerbeetle_store(),
        _tigerbeetle_batches(),
        mongo_latency_us,
    )
    return comparison.outcome


@shared_task(name="ledger.backfill")
def backfill(page_size: int = 2000) -> dict[str, Any]:
    """Import every legacy wallet (idempotent: a retried or repeated task skips done ones)."""
    report = Backfill(
        _legacy_scan(),
        _mongo_outbox(),
        _tigerbeetle_batches(),
    ).run(page_size=page_size, progress=False)
    return {
        "scanned": report.scanned,
        "imported": report.imported,
        "already_imported": report.already_imported,
        "failed": report.failed[:100],
        "duration_s": round(report.duration_s, 3),
    }


@shared_task(name="ledger.reconcile")
def reconcile(triggered_by: str = "schedule") -> dict[str, Any]:
    """Celery beat (RECONCILE_INTERVAL_S): compare every wallet in both stores."""
    run = Reconciliation(
        _legacy_scan(),
        _mongo_outbox(),
        _tigerbeetle_batches(),
    ).run(triggered_by=triggered_by)
    return {
        "run_id": run.pk,
        "checked": run.checked,
        "matched": run.matched,
        "mismatched": run.mismatched,
        "duration_s": run.duration_s,
    }
