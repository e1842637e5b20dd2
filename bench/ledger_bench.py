"""Ledger backend benchmark: create_transfers throughput and lookup_accounts latency.

    make bench-ledger                      # the engine on the configured database (SQLite)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wallet make bench-ledger
    TB_ADDRESSES=127.0.0.1:3000 make bench-ledger   # adds the real TigerBeetle client

Every figure is printed beside a baseline measured in the same run on the same database:
plain row inserts (same batch sizes, one transaction per batch) and primary-key reads of a
bare table. The ratio says what TigerBeetle's semantics cost on top of the database itself.
Runs on a scratch database that it creates and drops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from tigerbeetle import Account, AccountFlags, CreateTransferStatus, Transfer
from tigerbeetle import id as tb_id
from tqdm import tqdm

from bench.common import Figure, percentile, print_figures, scratch_database
from ledger.backends.base import LedgerBackend
from ledger.backends.tigerbeetle_client import TigerBeetleBackend
from ledger.engine.backend import EngineBackend

LEDGER = 840
BATCH_SIZES = (1, 100, 8189)


def baseline_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_baseline")
        cursor.execute(
            "CREATE TABLE bench_baseline (id BIGINT PRIMARY KEY, a BIGINT, b BIGINT, c BIGINT)"
        )


def baseline_inserts(total: int, *, batch_size: int, start_id: int) -> float:
    """Seconds to insert `total` rows in transactions of `batch_size` rows."""
    placeholder = "%s"
    sql = f"INSERT INTO bench_baseline (id, a, b, c) VALUES ({', '.join([placeholder] * 4)})"
    started = time.perf_counter()
    for offset in range(0, total, batch_size):
        rows = [(start_id + i, i, i, i) for i in range(offset, min(total, offset + batch_size))]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
    return time.perf_counter() - started


def baseline_reads(count: int, *, max_id: int) -> list[float]:
    samples = []
    with connection.cursor() as cursor:
        for i in range(count):
            started = time.perf_counter()
            cursor.execute("SELECT id, a, b, c FROM bench_baseline WHERE id = %s", [i % max_id])
            cursor.fetchone()
            samples.append(time.perf_counter() - started)
    return samples


def make_accounts(backend: LedgerBackend, count: int) -> list[int]:
    ids = [tb_id() for _ in range(count)]
    accounts = [Account(id=ids[0], ledger=LEDGER, code=2)] + [
        Account(id=i, ledger=LEDGER, code=1, flags=AccountFlags.HISTORY) for i in ids[1:]
    ]
    results = backend.create_accounts(accounts)
    assert all(r.timestamp for r in results), "account creation failed"
    return ids


def transfer_throughput(
    backend: LedgerBackend, account_ids: list[int], total: int, *, batch_size: int
) -> float:
    """Seconds to post `total` transfers from the funding account in batches."""
    funding, wallets = account_ids[0], account_ids[1:]
    started = time.perf_counter()
    for offset in tqdm(
        range(0, total, batch_size),
        desc=f"batch {batch_size}",
        leave=False,
        disable=not sys.stderr.isatty(),
    ):
        batch = [
            Transfer(
                id=tb_id(),
                debit_account_id=funding,
                credit_account_id=wallets[i % len(wallets)],
                amount=1 + i % 1000,
                ledger=LEDGER,
                code=1,
            )
            for i in range(offset, min(total, offset + batch_size))
        ]
        results = backend.create_transfers(batch)
        failed = [r for r in results if r.status != CreateTransferStatus.CREATED]
        assert not failed, f"transfers refused: {failed[:3]}"
    return time.perf_counter() - started


def lookup_latency(backend: LedgerBackend, account_ids: list[int], count: int) -> list[float]:
    samples = []
    for i in range(count):
        account_id = account_ids[1 + i % (len(account_ids) - 1)]
        started = time.perf_counter()
        found = backend.lookup_accounts([account_id])
        samples.append(time.perf_counter() - started)
        assert found, "lookup found nothing"
    return samples


def run_backend(name: str, backend: LedgerBackend, scale: float) -> list[Figure]:
    figures: list[Figure] = []
    account_ids = make_accounts(backend, 1_001)
    baseline_table()
    next_baseline_id = 0
    for batch_size in BATCH_SIZES:
        total = {1: int(1_000 * scale), 100: int(20_000 * scale), 8189: int(3 * 8189 * scale)}[
            batch_size
        ]
        total = max(total, batch_size)
        seconds = transfer_throughput(backend, account_ids, total, batch_size=batch_size)
        baseline_s = baseline_inserts(total, batch_size=batch_size, start_id=next_baseline_id)
        next_baseline_id += total
        figures.append(
            Figure(
                f"{name}: create_transfers, batches of {batch_size}",
                total / seconds,
                total / baseline_s,
                "transfers/s",
            )
        )
    lookups = lookup_latency(backend, account_ids, int(2_000 * scale) or 100)
    reads = baseline_reads(len(lookups), max_id=next_baseline_id)
    for pct in (50, 95, 99):
        figures.append(
            Figure(
                f"{name}: lookup_accounts p{pct}",
                percentile(lookups, pct) * 1000,
                percentile(reads, pct) * 1000,
                "ms",
            )
        )
    figures.append(
        Figure(
            f"{name}: lookup_accounts mean",
            statistics.fmean(lookups) * 1000,
            statistics.fmean(reads) * 1000,
            "ms",
        )
    )
    return figures


def backends() -> list[tuple[str, Callable[[], LedgerBackend]]]:
    available: list[tuple[str, Callable[[], LedgerBackend]]] = [("engine", EngineBackend)]
    if settings.TB_ADDRESSES:
        available.append(
            (
                "tigerbeetle",
                lambda: TigerBeetleBackend(
                    cluster_id=settings.TB_CLUSTER_ID, addresses=settings.TB_ADDRESSES
                ),
            )
        )
    return available


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    with scratch_database("ledger"):
        for name, factory in backends():
            backend = factory()
            try:
                figures += run_backend(name, backend, args.scale)
            finally:
                backend.close()
    print_figures("Ledger backends", figures, "bare-table inserts / primary-key reads, same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
