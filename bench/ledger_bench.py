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
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_site.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from tigerbeetle import Account, AccountFlags, CreateTransferStatus, Transfer  # noqa: E402
from tigerbeetle import id as tb_id  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ledger.backends.base import LedgerBackend  # noqa: E402

LEDGER = 840
BATCH_SIZES = (1, 100, 8189)


@dataclass
class Figure:
    name: str
    value: float
    baseline: float
    unit: str
    higher_is_better: bool

    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


def percentile(samples_s: list[float], pct: float) -> float:
    ordered = sorted(samples_s)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


@contextmanager
def scratch_database() -> Iterator[None]:
    """A fresh database beside the configured one, dropped afterwards."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db["TEST"]["NAME"] = str(settings.VAR_DIR / "bench_db.sqlite3")
    else:
        db["TEST"]["NAME"] = f"{db['NAME']}_bench"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def baseline_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_baseline")
        cursor.execute(
            "CREATE TABLE bench_baseline (id BIGINT PRIMARY KEY, a BIGINT, b BIGINT, c BIGINT)"
        )


def baseline_inserts(total: int, batch_size: int, start_id: int) -> float:
    """Seconds to insert `total` rows in transactions of `batch_size` rows."""
    placeholder = "%s"
    sql = f"INSERT INTO bench_baseline (id, a, b, c) VALUES ({', '.join([placeholder] * 4)})"
    started = time.perf_counter()
    for offset in range(0, total, batch_size):
        rows = [(start_id + i, i, i, i) for i in range(offset, min(total, offset + batch_size))]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
    return time.perf_counter() - started


def baseline_reads(count: int, max_id: int) -> list[float]:
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
    backend: LedgerBackend, account_ids: list[int], total: int, batch_size: int
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
        seconds = transfer_throughput(backend, account_ids, total, batch_size)
        baseline_s = baseline_inserts(total, batch_size, next_baseline_id)
        next_baseline_id += total
        figures.append(
            Figure(
                f"{name}: create_transfers, batches of {batch_size}",
                total / seconds,
                total / baseline_s,
                "transfers/s",
                True,
            )
        )
    lookups = lookup_latency(backend, account_ids, int(2_000 * scale) or 100)
    reads = baseline_reads(len(lookups), next_baseline_id)
    for pct in (50, 95, 99):
        figures.append(
            Figure(
                f"{name}: lookup_accounts p{pct}",
                percentile(lookups, pct) * 1000,
                percentile(reads, pct) * 1000,
                "ms",
                False,
            )
        )
    figures.append(
        Figure(
            f"{name}: lookup_accounts mean",
            statistics.fmean(lookups) * 1000,
            statistics.fmean(reads) * 1000,
            "ms",
            False,
        )
    )
    return figures


def backends() -> list[tuple[str, Callable[[], LedgerBackend]]]:
    from ledger.engine.backend import EngineBackend

    available: list[tuple[str, Callable[[], LedgerBackend]]] = [("engine", EngineBackend)]
    if settings.TB_ADDRESSES:
        from ledger.backends.tigerbeetle_client import TigerBeetleBackend

        available.append(
            (
                "tigerbeetle",
                lambda: TigerBeetleBackend(
                    cluster_id=settings.TB_CLUSTER_ID, addresses=settings.TB_ADDRESSES
                ),
            )
        )
    return available


def print_figures(figures: list[Figure]) -> None:
    vendor = connection.vendor
    print(f"\ndatabase: {vendor}; baseline: bare-table inserts / primary-key reads, same run")
    print(f"{'figure':<46} {'value':>12} {'baseline':>12} {'unit':<12} {'ratio':>8}")
    for figure in figures:
        print(
            f"{figure.name:<46} {figure.value:>12.3f} {figure.baseline:>12.3f} "
            f"{figure.unit:<12} {figure.ratio():>7.3f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    with scratch_database():
        for name, factory in backends():
            backend = factory()
            try:
                figures += run_backend(name, backend, args.scale)
            finally:
                backend.close()
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
