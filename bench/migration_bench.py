"""Migration benchmark: backfill and reconciliation throughput over N legacy wallets.

    make bench-migration                          # embedded defaults, 100,000 wallets
    make bench-migration BENCH_ARGS="--wallets 20000"
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wallet make bench-migration
    TB_ADDRESSES=127.0.0.1:3000 make bench-migration     # the real server; 20,000 by default

Seeds N legacy wallet documents (no transaction log) in a scratch MongoDB database, then
times, in the same run:
- backfill: `migration.backfill.Backfill` (accounts, opening-balance pairs, registry rows),
  beside its raw baseline: the same MongoDB page scan plus a bare-table insert of one row per
  wallet (the I/O any import has to do);
- reconciliation: `migration.reconciliation.Reconciliation` over the imported wallets, beside its
  raw baseline: the same page scan plus primary-key reads of the bare table in pages;
- the dual-write mirror: `migration.mirror.Mirror.drain` over one pending outbox credit for each
  of the first --mirror-entries wallets, beside its raw baseline: reading the same pending
  entries, a bare-table insert each, and marking them done.
Each figure is wallets per second; the ratio is figure / baseline. The seed's target for
reconciliation on the embedded default is at least 5,000 wallets/s.

With TB_ADDRESSES set, the raw `tigerbeetle` client's throughput for the same events joins the
baselines, in batches of 8189: create_accounts for N wallet accounts, create_transfers for their
opening pairs (linked, as the backfill sends them), lookup_accounts for the same ids, and
create_transfers for the mirror's M credits. These events are ordinary (not `imported`) and live
on a ledger and account code of their own, so no job sees them. Each job should reach at least
50% of its slowest raw input in the same run.

Every job also prints where its time went: MongoDB commands, registry SQL and TigerBeetle calls
(bench.phases), and the rest, the job's own Python work.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import tigerbeetle as tb
from bson.decimal128 import Decimal128
from django.conf import settings
from django.db import connection, transaction

from bench.common import (
    Figure,
    Target,
    mongo_server,
    print_figures,
    print_targets,
    scratch_database,
)
from bench.legacy import SEED_CHUNK, LegacySeed
from bench.phases import CLOCK, Phases, TimedBackend, print_breakdown
from domain.ids import WalletKey
from ledger.backends import get_ledger_backend
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.batches import LedgerBatches
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import key_filter
from migration.backfill import Backfill, BackfillReport
from migration.legacy_scan import LegacyScan
from migration.mirror import Mirror
from migration.outbox import MirrorOutbox, MirrorState
from migration.reconciliation import Reconciliation
from migration.runtime import process_runtime

RECONCILE_TARGET_WALLETS_PER_S = 5_000
JOB_SHARE_OF_SLOWEST_INPUT_MIN = 0.5
RAW_LEDGER = 9_999  # the raw baselines' own ledger and account code: no job looks there
RAW_CODE = 9_999
RAW_WARM_UP_ID = 1  # looked up once before the jobs (no account has it here)


RUN = uuid.uuid4().hex[:8]  # wallet keys (and so account ids) of this run only: a real
# cluster keeps every earlier run's accounts


SEED = LegacySeed(run=RUN)
client_id = SEED.client_id


def baseline_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_wallet_copy")
        cursor.execute(
            "CREATE TABLE bench_wallet_copy (id BIGINT PRIMARY KEY, client_id VARCHAR(128),"
            " credit BIGINT, debit BIGINT, historical BIGINT)"
        )


def baseline_copy(scan: LegacyScan, page_size: int) -> tuple[int, float]:
    """Page through MongoDB and insert one bare row per wallet: the raw cost of an import."""
    sql = (
        "INSERT INTO bench_wallet_copy (id, client_id, credit, debit, historical)"
        " VALUES (%s, %s, %s, %s, %s)"
    )
    started, copied = time.perf_counter(), 0
    for page in scan.wallet_batches(page_size):
        rows = [
            (copied + i, s.balance.key.client_id, *s.balance.fields_minor())
            for i, s in enumerate(page)
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        copied += len(page)
    return copied, time.perf_counter() - started


def baseline_compare(scan: LegacyScan, page_size: int) -> tuple[int, float]:
    """Page through MongoDB and read the bare rows back by key: the raw cost of a comparison."""
    started, compared = time.perf_counter(), 0
    for page in scan.wallet_batches(page_size):
        ids = list(range(compared, compared + len(page)))
        with connection.cursor() as cursor:
            for offset in range(0, len(ids), 900):  # SQLite's bound-parameter limit
                chunk = ids[offset : offset + 900]
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    f"SELECT id, credit, debit, historical FROM bench_wallet_copy"
                    f" WHERE id IN ({marks})",
                    chunk,
                )
                cursor.fetchall()
        compared += len(page)
    return compared, time.perf_counter() - started


def seed_outbox(database: MongoDatabase, count: int) -> None:
    """One pending credit in the outbox for each of the first `count` (imported) wallets."""
    log = database.log()
    created = datetime.now(UTC)
    for start in range(0, count, SEED_CHUNK):
        log.insert_many(
            [
                {
                    "_id": f"bench-credit-{RUN}-{number:08d}",
                    "kind": "credit",
                    **key_filter(WalletKey(client_id(number), "USA", "USD")),
                    "amount": Decimal128("1.25"),
                    "amount_minor": 125,
                    "state": "posted",
                    "wallet_seq": 1,
                    "mirror_state": MirrorState.PENDING,
                    "created_at": created,
                }
                for number in range(start, min(count, start + SEED_CHUNK))
            ],
            ordered=False,
        )


def baseline_mirror(outbox: MirrorOutbox) -> tuple[int, float]:
    """Read pending entries as the mirror does, write a bare row each, mark them: the raw
    cost of moving the outbox (entries are put back to pending afterwards, untimed)."""
    sql = "INSERT INTO bench_outbox_copy (id, amount) VALUES (%s, %s)"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_outbox_copy")
        cursor.execute("CREATE TABLE bench_outbox_copy (id VARCHAR(64) PRIMARY KEY, amount BIGINT)")
    started, moved = time.perf_counter(), 0
    while entries := outbox.pending(BATCH_EVENTS_MAX):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, [(str(e.entry_id), e.amount_minor) for e in entries])
        outbox.mark_each({e.entry_id: ("bench-baseline", {}) for e in entries})
        moved += len(entries)
    elapsed = time.perf_counter() - started
    outbox.database.log().update_many(
        {"mirror_state": "bench-baseline"}, {"$set": {"mirror_state": MirrorState.PENDING}}
    )
    return moved, elapsed


def raw_tigerbeetle(wallets: int, *, mirror_entries: int) -> dict[str, float]:
    """The raw client's batched throughput for the jobs' events, per second of each input."""
    client = tb.ClientSync(
        cluster_id=settings.TB_CLUSTER_ID, replica_addresses=settings.TB_ADDRESSES
    )
    try:
        system_id = tb.id()
        client.create_accounts([tb.Account(id=system_id, ledger=RAW_LEDGER, code=RAW_CODE)])
        flags = tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | tb.AccountFlags.HISTORY
        accounts = [
            tb.Account(id=tb.id(), ledger=RAW_LEDGER, code=RAW_CODE, flags=flags)
            for _ in range(wallets)
        ]
        transfers = []
        for number, account in enumerate(accounts):  # the seed's balances, as opening pairs
            credit, debit = 1_000 + number % 97_000, number % 500
            pair = [
                tb.Transfer(
                    id=tb.id(),
                    debit_account_id=system_id,
                    credit_account_id=account.id,
                    amount=credit + debit,
                    ledger=RAW_LEDGER,
                    code=RAW_CODE,
                    flags=tb.TransferFlags.LINKED if debit else tb.TransferFlags.NONE,
                )
            ]
            if debit:
                pair.append(
                    tb.Transfer(
                        id=tb.id(),
                        debit_account_id=account.id,
                        credit_account_id=system_id,
                        amount=debit,
                        ledger=RAW_LEDGER,
                        code=RAW_CODE,
                    )
                )
            transfers.extend(pair)
        credits = [
            tb.Transfer(
                id=tb.id(),
                debit_account_id=system_id,
                credit_account_id=accounts[number % wallets].id,
                amount=125,
                ledger=RAW_LEDGER,
                code=RAW_CODE,
            )
            for number in range(mirror_entries)
        ]
        ids = [account.id for account in accounts]
        seconds = {
            "create_accounts": _batched_s(client.create_accounts, accounts),
            "create_transfers": _batched_s(client.create_transfers, transfers, linked=True),
            "lookup_accounts": _batched_s(client.lookup_accounts, ids),
            "mirror create_transfers": _batched_s(client.create_transfers, credits),
        }
    finally:
        client.close()
    return {
        "create_accounts": wallets / seconds["create_accounts"],
        "create_transfers": wallets / seconds["create_transfers"],
        "transfers": len(transfers) / seconds["create_transfers"],
        "lookup_accounts": wallets / seconds["lookup_accounts"],
        "mirror create_transfers": mirror_entries / seconds["mirror create_transfers"],
    }


def _batched_s(
    call: Callable[[list[Any]], list[Any]], events: list[Any], linked: bool = False
) -> float:
    """Seconds to send `events` in requests of at most 8189, never splitting a linked pair."""
    started = time.perf_counter()
    start = 0
    while start < len(events):
        end = min(start + BATCH_EVENTS_MAX, len(events))
        if linked and end < len(events) and events[end - 1].flags & tb.TransferFlags.LINKED:
            end -= 1
        results = call(events[start:end])
        if call.__name__ != "lookup_accounts":
            assert all(r.status.name == "CREATED" for r in results), results[:3]
        start = end
    return time.perf_counter() - started


def job_targets(figures: dict[str, float], *, raw: dict[str, float]) -> list[Target]:
    """Each job against its slowest raw input of the same run (issue 10: at least 0.5x);
    the raw client's inputs only where `raw` has them (the real server)."""
    inputs = {
        "backfill": {
            "MongoDB scan + bare insert": figures.get("backfill baseline"),
            "raw create_accounts": raw.get("create_accounts"),
            "raw create_transfers": raw.get("create_transfers"),
        },
        "reconciliation": {
            "MongoDB scan + key reads": figures.get("reconciliation baseline"),
            "raw lookup_accounts": raw.get("lookup_accounts"),
        },
        "mirror": {
            "MongoDB pending read + insert + mark": figures.get("mirror baseline"),
            "raw create_transfers": raw.get("mirror create_transfers"),
        },
    }
    targets = []
    for job, measured in inputs.items():
        rates = {name: rate for name, rate in measured.items() if rate is not None}
        if job not in figures or not rates:  # a job this run did not measure
            continue
        slowest = min(rates, key=rates.__getitem__)
        targets.append(
            Target(
                f"{job} vs its slowest input ({slowest})",
                figures[job],
                rates[slowest],
                "/s",
                ratio_min=JOB_SHARE_OF_SLOWEST_INPUT_MIN,
            )
        )
    return targets


def print_backfill_breakdown(report: BackfillReport, phases: Phases) -> None:
    """The backfill's thread, with what it waited for: its reader thread (MongoDB) and its
    TigerBeetle thread, whose own calls are shown apart as background phases."""
    waits = {
        "waiting for MongoDB's next page": report.read_wait_s,
        "waiting for TigerBeetle's half of a page": report.tigerbeetle_wait_s,
    }
    print_breakdown("backfill", report.duration_s, phases, waits=waits)


def parse_args(argv: list[str] | None, *, on_server: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wallets", type=int, default=20_000 if on_server else 100_000)
    parser.add_argument("--page-size", type=int, default=2000, help="backfill page size")
    parser.add_argument(
        "--mirror-entries", type=int, default=20_000, help="outbox entries for the mirror figure"
    )
    return parser.parse_args(argv)


def migration_figures(rates: dict[str, float]) -> list[Figure]:
    """Each job's throughput against its baseline, and the reconciliation's against the seed's
    target."""
    return [
        Figure("backfill throughput", rates["backfill"], rates["backfill baseline"], "wallets/s"),
        Figure(
            "reconciliation throughput",
            rates["reconciliation"],
            rates["reconciliation baseline"],
            "wallets/s",
        ),
        Figure("mirror throughput", rates["mirror"], rates["mirror baseline"], "entries/s"),
        Figure(
            "reconciliation vs the seed's target",
            rates["reconciliation"],
            RECONCILE_TARGET_WALLETS_PER_S,
            "wallets/s",
        ),
    ]


def print_raw(raw: dict[str, float], *, rates: dict[str, float]) -> None:
    """The raw client's rates, and each job against its slowest raw input."""
    print("\nRaw TigerBeetle client, batches of 8189, same run")
    for name, rate in raw.items():
        unit = "transfers/s" if name == "transfers" else "/s"
        print(f"  {name:<28} {rate:>12,.0f} {unit}")
    print_targets("Each job against its slowest raw input, same run", job_targets(rates, raw=raw))


def main(argv: list[str] | None = None) -> int:
    on_server = bool(settings.TB_ADDRESSES)
    args = parse_args(argv, on_server=on_server)
    phases: dict[str, Phases] = {}
    with mongo_server(wallets=args.wallets) as mongo_url, scratch_database("migration"):
        # A long timeout: dropping 100,000 documents takes the embedded server a while.
        database = MongoDatabase(
            mongo_url, name=f"wallet_bench_{uuid.uuid4().hex[:6]}", timeout_s=300
        )
        scan, outbox = LegacyScan(database), MirrorOutbox(database)
        backend = get_ledger_backend()
        # The client's session registration (0.6 s on the server, once a process) is no
        # job's work: done here, untimed, as the raw baseline's is before its timings.
        backend.lookup_accounts([RAW_WARM_UP_ID])
        tigerbeetle = LedgerBatches(TimedBackend(backend), scope=process_runtime().scope)
        try:
            print(f"seeding {args.wallets} legacy wallets ...", file=sys.stderr)
            SEED.seed(database, args.wallets)
            baseline_table()

            copied, copy_s = baseline_copy(scan, args.page_size)
            with CLOCK.measuring() as phases["backfill"]:
                report = Backfill(scan, outbox, tigerbeetle).run(args.page_size, progress=True)
            assert report.imported == args.wallets and not report.failed, report.failed[:5]

            compared, compare_s = baseline_compare(scan, BATCH_EVENTS_MAX)
            with CLOCK.measuring() as phases["reconciliation"]:
                run = Reconciliation(scan, outbox, tigerbeetle).run(triggered_by="benchmark")
            assert run.matched == args.wallets and not run.error, run.error
            assert run.duration_s is not None

            entries = min(args.mirror_entries, args.wallets)
            seed_outbox(database, entries)
            moved, move_s = baseline_mirror(outbox)
            started = time.perf_counter()
            with CLOCK.measuring() as phases["mirror"]:
                mirrored = Mirror(outbox, tigerbeetle).drain()
            mirror_s = time.perf_counter() - started
            assert mirrored.applied == entries == moved, (mirrored, entries, moved)
        finally:
            database.client.drop_database(database.db.name)
        raw = raw_tigerbeetle(args.wallets, mirror_entries=entries) if on_server else {}
    rates = {
        "backfill": report.imported / report.duration_s,
        "backfill baseline": copied / copy_s,
        "reconciliation": run.checked / run.duration_s,
        "reconciliation baseline": compared / compare_s,
        "mirror": mirrored.applied / mirror_s,
        "mirror baseline": moved / move_s,
    }
    print_figures(
        f"Migration over {args.wallets:,} legacy wallets",
        migration_figures(rates),
        "MongoDB page scan + bare-table insert / key reads, same run",
    )
    print_backfill_breakdown(report, phases["backfill"])
    print_breakdown("reconciliation", run.duration_s, phases["reconciliation"])
    print_breakdown("mirror", mirror_s, phases["mirror"])
    if raw:
        print_raw(raw, rates=rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
