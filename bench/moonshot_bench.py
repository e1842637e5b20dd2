"""The moonshot: N legacy wallets moved onto TigerBeetle while clients keep writing (issue 25).

    make bench-moonshot                                      # 1,000,000 wallets, 100 writes/s
    make bench-moonshot BENCH_ARGS="--wallets 2000 --writes-per-s 20"
    TB_BINARY=../shared/tigerbeetle/tigerbeetle make bench-moonshot   # the real server, our own
    TB_ADDRESSES=127.0.0.1:3000 make bench-moonshot                   # a running server

Seeds N legacy wallet documents in a MongoDB database of this run (several currencies, one in
five empty; the traffic's phase-0 writes give the ones it touches a transaction log), then
starts the deployment as production runs it: gunicorn, a Celery worker with beat (on
CELERY_BROKER_URL with a queue of its own, else kombu's filesystem broker), a registry
database of its own beside DATABASE_URL's, REDIS_URL's cache under a key prefix of its own,
and the real TigerBeetle when TB_BINARY or TB_ADDRESSES is given, else the embedded engine.
Traffic (bench.traffic) writes and reads through the HTTP API at --writes-per-s each for the
whole run while the operator walks phase 0 -> 1 -> backfill -> reconciliation -> 2 -> 3 at
each read rollout step to 100 %, each step `manage.py migration_phase ... --override --reason`
(the gates wait for days of data this run does not have), which a second operator approves
(`--approve N`: an override waits for four eyes, FOUR_EYES_PHASE_CHANGES); then (unless
`--phase-4-s 0`) a full reconciliation, phase 4 (its entry compares in the pause only the
wallets changed since that run) for --phase-4-s of traffic, and back to phase 3 (the copy
back), each also approved by the second operator.

Printed, each beside its same-run baseline: the jobs' wall times and throughput against their
slowest raw input (measured before the traffic starts, as bench.migration_bench measures them),
the API's write and read latency (p50/p95/p99) in each step against before the migration, the
mirror's lag, the writes paused at each phase change, then the audit and the last line,
`moonshot: wallets=N backfill_s=.. reconcile_s=.. write_p99_ratio=.. lost=0 mismatched=0`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import tigerbeetle as tb
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from bench.common import (
    Target,
    api_authorization,
    deployment_env,
    gunicorn,
    mongo_server,
    percentile,
    print_targets,
    scratch_database,
    tigerbeetle_server,
)
from bench.deployment import broker_env, celery_worker, manage
from bench.legacy import CURRENCIES, LegacySeed
from bench.migration_bench import (
    baseline_compare,
    baseline_copy,
    baseline_table,
    job_targets,
    raw_tigerbeetle,
)
from bench.traffic import NEW_WALLETS, VOID_SHARE, Sample, Traffic, wallet_path
from domain.ids import WalletKey
from domain.money import currency_exponent
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.stores.mongo_database import WALLETS, MongoDatabase
from ledger.stores.mongo_documents import key_filter, key_of
from ledger.tb_model import history_filter
from migration.legacy_scan import LegacyScan
from migration.outbox import MirrorState
from registry import accounts as account_registry
from registry.models import WalletHold
from wallet_site.embedded_mongo import DEFAULT_TRANSACTION_LIFETIME_S

RUN = uuid.uuid4().hex[:8]
STARTED = time.perf_counter()
SEED = LegacySeed(run=RUN, mixed=True)
TRAFFIC_LEGACY_WALLETS = 1000  # the legacy wallets the traffic writes to and reads
MISMATCH_STORIES_MAX = 5  # wallets whose story a reconciliation's differences print
JOBS = ("backfill", "reconciliation")
JOBS_TOTAL_S_MAX = 300.0  # issue 25: backfill + reconciliation under 5 minutes
WRITE_P99_RATIO_MAX = 2.0
MIRROR_LAG_P99_S_MAX = 5.0
PAUSED_TOTAL_S_MAX = 2.0
DRAIN_WAIT_S = 120.0
JOB_AGAIN_MAX = 2  # runs of a job after its first, while it fails or finds differences
REASON = "benchmark run: the gates wait for days of data a benchmark does not have"
# Four eyes (FOUR_EYES_PHASE_CHANGES): an override is filed as a request, and this second
# operator approves it, as a team would; the step's time counts both commands.
APPROVER = f"moonshot-approver-{RUN}"
FILED = re.compile(r"request (\d+) filed")
SERVER_PAUSED = re.compile(r"writes paused ([\d.]+) s")


@dataclass
class Walk:
    """The operator's steps in order: label -> wall seconds, and each job's own report."""

    steps: dict[str, float]
    jobs: dict[str, dict[str, float]]
    # How long the server paused writes at each step that paused them (its own report).
    server_paused_s: dict[str, float]
    # When the last backfill run ended: every legacy wallet imported (None: it left some).
    backfilled_at: datetime | None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wallets", type=int, default=1_000_000)
    parser.add_argument("--writes-per-s", type=float, default=100.0)
    parser.add_argument("--before-s", type=float, default=20.0, help="traffic before phase 1")
    parser.add_argument("--after-s", type=float, default=5.0, help="traffic after the walk")
    parser.add_argument(
        "--phase-4-s",
        type=float,
        default=10.0,
        help="traffic in phase 4, entered after phase 3 and left back to it (0: stop at 3)",
    )
    parser.add_argument(
        "--void-share", type=float, default=VOID_SHARE, help="share of writes that are voids"
    )
    parser.add_argument("--page-size", type=int, default=2000, help="the backfill's page size")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--job-wallets-per-s",
        type=float,
        default=settings.MIGRATION_JOB_MAX_WALLETS_PER_S,
        help="the jobs' pace, MIGRATION_JOB_MAX_WALLETS_PER_S (0: no limit; default: the setting)",
    )
    return parser.parse_args(argv)


def with_database(mongo_url: str, *, name: str) -> str:
    parts = urlsplit(mongo_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def job_report(stdout: str) -> dict[str, float]:
    """The numbers of `manage.py backfill` / `reconcile`'s summary line, by their words."""
    numbers = {
        name.strip().replace(" ", "_"): float(value)
        for name, value in re.findall(r"([a-z][a-z -]*?) (\d+)(?=[,\s]|$)", stdout)
    }
    seconds = re.search(r" in (\d+(?:\.\d+)?) s", stdout)
    if seconds is None:
        raise RuntimeError(f"no duration in the job's output: {stdout!r}")
    numbers["duration_s"] = float(seconds.group(1))
    return numbers


def transfer_differences(stdout: str) -> list[str]:
    """The listed differences of a `manage.py reconcile` (its lines after the summary)."""
    return [line for line in stdout.splitlines() if line.startswith("  ")]


def indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines())


def progress(what: str) -> None:
    """A step of the run on stderr, with the time since the run started."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {what}", file=sys.stderr, flush=True)


def walk(
    traffic: Traffic, env: dict[str, str], database: MongoDatabase, *, operator: str, args: Any
) -> Walk:
    """Phase 0 -> 1 -> backfill -> reconciliation -> 2 -> 3 at each rollout step -> a full
    reconciliation -> 4 -> back to 3, under load."""
    steps: dict[str, float] = {}
    jobs: dict[str, dict[str, float]] = {}
    server_paused_s: dict[str, float] = {}

    def phase(label: str, *arguments: str, override: bool = True) -> None:
        traffic.label = label
        progress(label)
        steps[label], stdout = take_step(env, arguments, operator=operator, override=override)
        paused = SERVER_PAUSED.search(stdout)
        if paused:
            server_paused_s[label] = float(paused[1])
        print_step_report(stdout)

    def job(label: str, *command: str) -> str:
        traffic.label = label
        progress(label)
        run = manage(env, *command, check=False)  # a failure or a mismatch is a figure
        steps[label] = run.seconds
        print(indented(run.stdout + run.stderr), file=sys.stderr, flush=True)  # a failure too
        jobs[label] = job_report(run.stdout)
        for transaction_id in sorted(set(re.findall(r"void of ([\w-]+)", run.stdout + run.stderr))):
            print(f"    traffic: {traffic.tally.story(transaction_id)}", file=sys.stderr)
        return run.stdout

    time.sleep(args.before_s)  # holds stay open across every step (docs/holds.md)
    phase("phase 0 -> 1", "1")
    backfill = ["backfill", "--no-progress", "--page-size", str(args.page_size)]
    job("backfill", *backfill)
    # Under live writes a run may leave wallets out (each listed): the operator runs it again,
    # as the command says; each run is kept as a figure of its own.
    for again in range(1, JOB_AGAIN_MAX + 1):
        if not jobs[f"backfill again ({again - 1})" if again > 1 else "backfill"]["failed"]:
            break
        job(f"backfill again ({again})", *backfill)
    backfilled_at = None if list(jobs.values())[-1]["failed"] else datetime.now(UTC)

    def reconcile(label: str) -> None:
        # Differences under live writes: the operator runs it again before stepping on (the
        # step to phase 2 refuses on the last run's, phase 4's entry on a run not clean).
        stdout = job(label, "reconcile")
        for again in range(1, JOB_AGAIN_MAX + 1):
            if not transfer_differences(stdout):
                return
            print_mismatch_stories(database, stdout)
            stdout = job(f"{label} again ({again})", "reconcile")
        print_mismatch_stories(database, stdout)

    reconcile("reconciliation")
    phase("phase 1 -> 2", "2", "--shadow", "100")
    for percent in settings.READ_ROLLOUT_STEPS:
        phase(f"phase 3 at {percent} %", "3", "--rollout", str(percent))
    if args.phase_4_s > 0:
        # Phase 4's entry builds on a clean full run made just before it, and compares in
        # its pause only the wallets changed since (migration.entry_check); then traffic in
        # phase 4, and the step back, which copies TigerBeetle's writes into MongoDB.
        reconcile("reconciliation before phase 4")
        phase("phase 3 -> 4", "4")
        traffic.label = "in phase 4"
        time.sleep(args.phase_4_s)
        phase("phase 4 -> 3", "3", "--rollout", "100", override=False)
    traffic.label = "after"
    time.sleep(args.after_s)
    return Walk(
        steps=steps, jobs=jobs, server_paused_s=server_paused_s, backfilled_at=backfilled_at
    )


def entry_margin_env() -> dict[str, str]:
    """Phase 4's entry counts a wallet as changed when MongoDB wrote it since a pass's start
    less PHASE4_ENTRY_MARK_MARGIN_S, which must exceed MongoDB's longest write transaction:
    the bench's own server aborts one after DEFAULT_TRANSACTION_LIFETIME_S idle seconds, so
    twice that (the same host: no clock skew). A server the environment names keeps the
    setting (120 s by default: a real mongod's transactions live 60 s)."""
    if "MONGO_URL" in os.environ:
        return {}
    return {"PHASE4_ENTRY_MARK_MARGIN_S": f"{2 * DEFAULT_TRANSACTION_LIFETIME_S:g}"}


def take_step(
    env: dict[str, str], arguments: tuple[str, ...], *, operator: str, override: bool
) -> tuple[float, str]:
    """One phase step as the operator asks it and the second operator approves it: its wall
    seconds, and what the command that took it printed."""
    overriding = ["--override", "--reason", REASON] if override else []
    run = manage(env, "migration_phase", *arguments, *overriding, "--actor", operator)
    seconds = run.seconds
    filed = FILED.search(run.stdout)
    if filed:
        approve = ["--approve", filed[1], "--actor", APPROVER, "--why", REASON]
        run = manage(env, "migration_phase", *approve)
        seconds += run.seconds
    return seconds, run.stdout


def print_step_report(stdout: str) -> None:
    """What a phase step did (mirrored, copied back, how much before the pause), as the
    command that took it says, on stderr."""
    for line in stdout.splitlines():
        if line.startswith("phase ") and "->" in line:
            print(indented(line), file=sys.stderr, flush=True)


def wait_for_the_mirror(database: MongoDatabase) -> None:
    """Until no acknowledged write waits for the mirror (the beat's sweeper and the tasks)."""
    waiting = {"mirror_state": {"$in": [MirrorState.PENDING, MirrorState.AWAITING_BACKFILL]}}
    deadline = time.monotonic() + DRAIN_WAIT_S
    while (left := database.log().count_documents(waiting)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        stuck = Counter(
            (entry.get("kind"), entry.get("mirror_state"), entry.get("mirror_attempts", 0))
            for entry in database.log().find(waiting).limit(1000)
        )
        raise RuntimeError(
            f"{left} log entries still wait for the mirror after {DRAIN_WAIT_S} s "
            f"(kind, state, attempts: {dict(stuck)}); the oldest:\n"
            + "\n".join(stuck_entries(database, waiting))
        )


def stuck_entries(database: MongoDatabase, waiting: dict[str, Any], limit: int = 12) -> list[str]:
    """The oldest entries still waiting, each with what decides its fate: its wallet's document
    (born with the log or legacy, its seq) and registry row (the opening seq the backfill or the
    mirror settled), so a stall can be told from the benchmark's output alone."""
    entries = list(database.log().find(waiting).sort("created_at", 1).limit(limit))
    keys = {key_of(entry) for entry in entries}
    rows = account_registry.rows_by_key(keys)
    lines = []
    for entry in entries:
        key = key_of(entry)
        document = database.db[WALLETS].find_one(key_filter(key)) or {}
        row = rows.get(key)
        lines.append(
            f"  {entry['_id']!r} {entry.get('kind')} seq {entry.get('wallet_seq')} of "
            f"{key.describe()}: {entry.get('mirror_state')} since "
            f"{entry.get('mirror_updated_at')} (written {entry.get('created_at')}, attempts "
            f"{entry.get('mirror_attempts', 0)}, error {entry.get('mirror_error', '')!r}); "
            f"wallet seq {document.get('wallet_seq')}, log_complete "
            f"{document.get('log_complete', False)}; registry "
            + (f"opening_seq {row.opening_seq}" if row is not None else "no row")
        )
    return lines


MISMATCH_LINE = re.compile(r"^  \S+ (\S+) (\S+) (\S+) mongo=")


def mismatch_stories(database: MongoDatabase, reconcile_stdout: str) -> list[str]:
    """For each wallet a reconciliation lists as differing: its log entries in seq order with
    their mirror state, its holds in both stores and its transfers in TigerBeetle, so a
    difference can be told from the benchmark's output alone (the run's MongoDB is gone
    after it)."""
    keys = [
        WalletKey(*match.groups())
        for line in reconcile_stdout.splitlines()
        if (match := MISMATCH_LINE.match(line))
    ]
    rows = account_registry.rows_by_key(keys) if keys else {}
    lines: list[str] = []
    for key in keys[:MISMATCH_STORIES_MAX]:
        row = rows.get(key)
        document = database.db[WALLETS].find_one(key_filter(key)) or {}
        lines.append(
            f"  {key.describe()}: wallet seq {document.get('wallet_seq')}, log_complete "
            f"{document.get('log_complete', False)}, registry "
            + (f"opening_seq {row.opening_seq}" if row is not None else "no row")
        )
        for entry in database.log().find(key_filter(key)).sort("wallet_seq", 1):
            lines.append(
                f"    log seq {entry.get('wallet_seq')} {entry.get('kind')} "
                f"{entry.get('hold_id') or entry['_id']} {entry.get('amount_minor')} "
                f"written {entry.get('created_at')}: {entry.get('mirror_state')} "
                f"at {entry.get('mirror_updated_at')} (attempts "
                f"{entry.get('mirror_attempts', 0)}, error {entry.get('mirror_error', '')!r})"
            )
        for hold in WalletHold.objects.filter(wallet__pk=row.pk) if row is not None else []:
            lines.append(
                f"    registry hold {hold.hold_id} {hold.amount_minor} {hold.state} "
                f"captured {hold.captured_minor} tb_timestamp {hold.tb_timestamp}"
            )
        if row is not None and settings.TB_ADDRESSES:
            lines.extend(f"    {line}" for line in tigerbeetle_transfers(row.tb_account_id))
    return lines


def print_mismatch_stories(database: MongoDatabase, reconcile_stdout: str) -> None:
    if stories := mismatch_stories(database, reconcile_stdout):
        print("\n".join(stories), file=sys.stderr, flush=True)


def tigerbeetle_transfers(tb_account_id: int) -> list[str]:
    """The account's transfers on the real server, oldest first."""
    client = tb.ClientSync(
        cluster_id=settings.TB_CLUSTER_ID, replica_addresses=settings.TB_ADDRESSES
    )
    try:
        account_filter = history_filter(tb_account_id, limit=BATCH_EVENTS_MAX, newest_first=False)
        return [
            f"tb transfer {t.id:032x} {t.flags!r} amount {t.amount} pending_id "
            f"{t.pending_id:032x} timeout {t.timeout} code {t.code} at {t.timestamp}"
            for t in client.get_account_transfers(account_filter)
        ]
    finally:
        client.close()


@dataclass(frozen=True)
class MirrorLags:
    """Seconds from each mirrored entry's write to its mirroring: of every entry, and of the
    entries written once the backfill had imported every wallet (`steady`). The others wait
    by design: a write of phase 0 for dual write, a legacy wallet's for its import."""

    every: list[float]
    steady: list[float]


def mirror_lags(database: MongoDatabase, *, backfilled_at: datetime | None) -> MirrorLags:
    entries = database.log().find(
        {"mirror_state": MirrorState.MIRRORED}, {"created_at": 1, "mirror_updated_at": 1}
    )
    every, steady = [], []
    for entry in entries:
        if not entry.get("mirror_updated_at"):
            continue
        lag_s = (entry["mirror_updated_at"] - entry["created_at"]).total_seconds()
        every.append(lag_s)
        written = entry["created_at"].replace(tzinfo=UTC)
        if backfilled_at is not None and written >= backfilled_at:
            steady.append(lag_s)
    return MirrorLags(every=every, steady=steady)


def minor_units(amount: Decimal, currency: str) -> int:
    """A balance (zero included, which domain.money's amounts never are) in minor units."""
    return int(amount.scaleb(currency_exponent(currency)))


@dataclass
class Audit:
    wallets: int
    mismatched: list[str]  # one line per store that differs
    differing: int  # wallets
    lost: int
    doubled: int
    held_minor: int = 0  # what the holds the traffic left open reserve, by the tally
    open_holds: int = 0


def mongo_fields(document: dict[str, Any], key: WalletKey) -> tuple[int, int, int, int]:
    """(credit, debit, historical credit, held) of a wallet document: posted amounts, and what
    its open holds reserve."""
    posted = tuple(
        minor_units(document[field].to_decimal(), key.currency) if field in document else 0
        for field in ("credit", "debit", "historical_credit", "held")
    )
    return posted[0], posted[1], posted[2], posted[3]


def api_fields(body: dict[str, Any], key: WalletKey) -> tuple[int, int, int, int]:
    """The same from the API's balance answer, whose `credit` is available (posted - held)."""
    credit, debit, historical, held = (
        minor_units(Decimal(body[field]), key.currency) if field in body else 0
        for field in ("credit", "debit", "historical_credit", "held")
    )
    return credit + held, debit, historical, held


def audit(traffic: Traffic, database: MongoDatabase, *, base: str, legacy: list[int]) -> Audit:
    """Every wallet the traffic touched, and the legacy ones it chose, in MongoDB (its document)
    and in TigerBeetle (the API in phase 3 at 100 %, nothing left to mirror) against the tally,
    posted amounts and what open holds reserve; every acknowledged credit and debit id in
    MongoDB's log, and every hold placed in its holds."""
    tally = traffic.tally
    openings: dict[WalletKey, tuple[int, int]] = {
        SEED.key(n): SEED.balance_minor(n) for n in legacy
    }
    for key in tally.delta:
        openings.setdefault(key, (0, 0))
    session = requests.Session()
    session.headers["Authorization"] = traffic.authorization
    mismatched: list[str] = []
    differing: set[WalletKey] = set()
    doubled = 0
    for key, opening in openings.items():
        expected = (*tally.expected(key, opening), tally.held.get(key, 0))
        mongo = mongo_fields(database.db[WALLETS].find_one(key_filter(key)) or {}, key)
        answer = session.get(base + wallet_path(key), timeout=30)
        tigerbeetle = api_fields(answer.json() if answer.status_code == 200 else {}, key)
        for store, actual in (("MongoDB", mongo), ("TigerBeetle", tigerbeetle)):
            if actual != expected:
                mismatched.append(f"{key}: {store} {actual}, tally {expected}")
                differing.add(key)
                doubled += actual[1] > expected[1] or actual[2] > expected[2]
    ids = [i for i, write in tally.writes.items() if write.kind in ("credit", "debit")]
    hold_ids = list(tally.placed_holds)
    found = 0
    for start in range(0, len(ids), 1000):
        found += database.log().count_documents({"_id": {"$in": ids[start : start + 1000]}})
    for start in range(0, len(hold_ids), 1000):
        found += database.holds().count_documents({"_id": {"$in": hold_ids[start : start + 1000]}})
    return Audit(
        len(openings),
        mismatched,
        len(differing),
        lost=len(ids) + len(hold_ids) - found,
        doubled=doubled,
        held_minor=sum(tally.held.values()),
        open_holds=len(tally.open_holds),
    )


def by_label(samples: list[Sample], kind: str) -> dict[str, list[float]]:
    labelled: dict[str, list[float]] = {}
    for sample in samples:
        if sample.kind == kind:
            labelled.setdefault(sample.label, []).append(sample.latency_s)
    return labelled


def print_latencies(samples: list[Sample]) -> None:
    """Each step's p50/p95/p99 beside the same run's before the migration."""
    for kind in ("write", "read"):
        labelled = by_label(samples, kind)
        before = labelled.get("before", [])
        print(f"\nAPI {kind} latency by step (ms; ratio: p99 / p99 before the migration)")
        print(f"{'step':<24} {'count':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'p99 ratio':>10}")
        for label, latencies in labelled.items():
            p50, p95, p99 = (percentile(latencies, pct) * 1000 for pct in (50, 95, 99))
            ratio = p99 / (percentile(before, 99) * 1000) if before else float("nan")
            shown = f"{p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {ratio:>9.2f}x"
            print(f"{label:<24} {len(latencies):>6} {shown}")


def print_pauses(samples: list[Sample], walked: Walk) -> float:
    """Writes answered after writes_paused 503s, by the step they started in, beside how long
    the server paused writes at that step; returns the server's total. The target is the
    server's: a client's wait adds its own retry interval, and the sum of the clients' waits
    grows with the write rate times the pause."""
    print("\nwrites paused by step (the server's pause; a write's: its first 503 to its answer)")
    print(
        f"{'step':<24} {'step s':>8} {'server s':>9} {'paused':>7} {'writes s':>9} "
        f"{'longest s':>10}"
    )
    total_s = 0.0
    for label, step_s in walked.steps.items():
        paused = [s.paused_s for s in samples if s.label == label and s.paused]
        server_s = walked.server_paused_s.get(label, 0.0)
        total_s += server_s
        longest = max(paused, default=0.0)
        print(
            f"{label:<24} {step_s:>8.2f} {server_s:>9.2f} {len(paused):>7} {sum(paused):>9.2f} "
            f"{longest:>10.2f}"
        )
    return total_s


def print_lags(label: str, lags_s: list[float]) -> float:
    """One line of mirror lags; their p99 (0 without any)."""
    p50 = percentile(lags_s, 50) if lags_s else 0.0
    p99 = percentile(lags_s, 99) if lags_s else 0.0
    print(
        f"  {label}: {len(lags_s)} entries, p50 {p50:.2f} s, p99 {p99:.2f} s, "
        f"max {max(lags_s, default=0.0):.2f} s"
    )
    return p99


def write_p99_ratio(samples: list[Sample]) -> float:
    """The worst write p99 during a job against the write p99 before the migration."""
    writes = by_label(samples, "write")
    before = percentile(writes["before"], 99)
    return max(percentile(writes[job], 99) for job in JOBS if job in writes) / before


def job_figures(
    walk_result: Walk, *, rates: dict[str, float], raw: dict[str, float]
) -> list[Target]:
    jobs = walk_result.jobs
    rates = {
        **rates,
        "backfill": jobs["backfill"]["scanned"] / jobs["backfill"]["duration_s"],
        "reconciliation": jobs["reconciliation"]["checked"] / jobs["reconciliation"]["duration_s"],
    }
    return job_targets(rates, raw=raw)


def raw_inputs(
    database: MongoDatabase, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """The jobs' raw inputs, as bench.migration_bench measures them, before any traffic: the
    MongoDB scan with bare-table inserts and key reads (wallets/s), and on the real server
    the raw client's batches."""
    scan = LegacyScan(database)
    baseline_table()
    copied, copy_s = baseline_copy(scan, args.page_size)
    compared, compare_s = baseline_compare(scan, BATCH_EVENTS_MAX)
    rates = {"backfill baseline": copied / copy_s, "reconciliation baseline": compared / compare_s}
    raw = raw_tigerbeetle(args.wallets, mirror_entries=1) if settings.TB_ADDRESSES else {}
    return rates, raw


def keep_on_failure(directory: Path, outcome: list[int]) -> Callable[..., bool]:
    """An exit callback for the run's directory (the Celery worker's log, its broker): removed
    after a clean run, kept and named on stderr when the run raised or `outcome` holds a failing
    exit status, so a stall or a mismatch can be read in the worker's log afterwards."""

    def leave(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is None and outcome and not any(outcome):
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(
                f"the run failed: its worker log is kept in {directory / 'worker.log'}",
                file=sys.stderr,
                flush=True,
            )
        return False

    return leave


def start_deployment(
    stack: ExitStack,
    args: argparse.Namespace,
    *,
    mongo_url: str,
    mongo_name: str,
    outcome: list[int],
) -> tuple[str, dict[str, str], str, str]:
    """The registry database, users, Celery worker with beat and gunicorn, each stopped by
    `stack`; the URL, the processes' environment, the API's Authorization and the operator.
    The run's directory, the worker's log in it, is kept unless `outcome` ends up clean."""
    database_name = stack.enter_context(scratch_database(f"moonshot_{RUN}"))
    users = get_user_model().objects
    authorization = api_authorization(users.create_user(f"moonshot-client-{RUN}"))
    operator = users.create_superuser(f"moonshot-operator-{RUN}").get_username()
    users.create_superuser(APPROVER)  # approves the operator's overrides (four eyes)
    connection.close()  # the deployment's processes open their own
    directory = Path(settings.VAR_DIR) / "bench-moonshot" / RUN
    stack.push(keep_on_failure(directory, outcome))  # after the worker stopped
    extra = {
        "MONGO_URL": with_database(mongo_url, name=mongo_name),
        "TB_ADDRESSES": settings.TB_ADDRESSES,
        "TB_ID_NAMESPACE": f"moonshot-{RUN}",
        "CACHE_KEY_PREFIX": f"moonshot-{RUN}",
        "MIGRATION_JOB_MAX_WALLETS_PER_S": str(args.job_wallets_per_s),
        **entry_margin_env(),
        **broker_env(run=RUN, directory=directory / "celery"),
    }
    env = deployment_env(store_name="phased", database_name=database_name, extra_env=extra)
    stack.enter_context(celery_worker(env, directory=directory))
    base = stack.enter_context(
        gunicorn(
            store_name="phased",
            database_name=database_name,
            workers=args.workers,
            threads=args.threads,
            keep_alive_s=5,
            extra_env=extra,
        )
    )
    return base, env, authorization, operator


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome: list[int] = []  # the run's exit status, once known (its directory is kept unless 0)
    with ExitStack() as stack:
        if not settings.TB_ADDRESSES and os.environ.get("TB_BINARY"):
            address = stack.enter_context(tigerbeetle_server(os.environ["TB_BINARY"]))
            os.environ["TB_ADDRESSES"] = settings.TB_ADDRESSES = address
        engine = (
            f"server at {settings.TB_ADDRESSES}" if settings.TB_ADDRESSES else "embedded engine"
        )
        mongo_url = stack.enter_context(mongo_server(wallets=args.wallets))
        mongo_name = f"moonshot_{RUN}"
        database = MongoDatabase(mongo_url, name=mongo_name, timeout_s=300)
        stack.callback(database.client.drop_database, mongo_name)
        progress(f"seeding {args.wallets} legacy wallets")
        SEED.seed(database, args.wallets)
        progress("starting the deployment")
        base, env, authorization, operator = start_deployment(
            stack, args, mongo_url=mongo_url, mongo_name=mongo_name, outcome=outcome
        )
        progress("measuring the jobs' raw inputs")
        rates, raw = raw_inputs(database, args)
        legacy = list(range(0, args.wallets, max(1, args.wallets // TRAFFIC_LEGACY_WALLETS)))
        traffic = Traffic(
            base,
            authorization=authorization,
            writes_per_s=args.writes_per_s,
            void_share=args.void_share,
            legacy=[SEED.key(n) for n in legacy],
            new=[
                WalletKey(f"new-{RUN}-{i:04d}", *CURRENCIES[i % len(CURRENCIES)])
                for i in range(NEW_WALLETS)
            ],
        )
        print(
            f"moonshot: {args.wallets:,} wallets, {args.writes_per_s:g} writes/s and as many "
            f"reads on {base} (gunicorn {args.workers}x{args.threads}, {engine}, "
            f"{connection.vendor}; load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        traffic.start()
        try:
            walked = walk(traffic, env, database, operator=operator, args=args)
        finally:
            traffic.stop()
        progress("waiting for the mirror")
        wait_for_the_mirror(database)
        progress("the final reconciliation")
        final_run = manage(env, "reconcile", check=False)
        print(indented(final_run.stdout), file=sys.stderr, flush=True)
        final = job_report(final_run.stdout)
        progress("the audit")
        result = audit(traffic, database, base=base, legacy=legacy)
        lags = mirror_lags(database, backfilled_at=walked.backfilled_at)
        outcome.append(
            report(
                args, traffic, walked, final=final, result=result, lags=lags, rates=rates, raw=raw
            )
        )
    return outcome[0]


def report(
    args: argparse.Namespace,
    traffic: Traffic,
    walked: Walk,
    *,
    final: dict[str, float],
    result: Audit,
    lags: MirrorLags,
    rates: dict[str, float],
    raw: dict[str, float],
) -> int:
    """Every figure beside its baseline, the targets, the audit; the machine-readable line."""
    samples = traffic.samples
    print("\nthe walk (wall seconds of each operator command, process start-up included)")
    for label, seconds in walked.steps.items():
        print(f"  {label:<24} {seconds:>8.2f} s")
    pace = f"{args.job_wallets_per_s:g} wallets/s" if args.job_wallets_per_s > 0 else "no limit"
    print(f"\nthe jobs' pace (MIGRATION_JOB_MAX_WALLETS_PER_S): {pace}")
    for job, figures in walked.jobs.items():
        shown = ", ".join(f"{name} {value:g}" for name, value in figures.items())
        print(f"  {job}: {shown}")
    print_latencies(samples)
    paused_s = print_pauses(samples, walked)
    print("\nmirror lag (write to mirrored)")
    print_lags("every entry", lags.every)
    lag_p99 = print_lags("written once every wallet was imported", lags.steady)
    backfill_s = walked.jobs["backfill"]["duration_s"]
    reconcile_s = walked.jobs["reconciliation"]["duration_s"]
    ratio = write_p99_ratio(samples)
    targets = [
        Target(
            "backfill + reconciliation (s) vs 5 minutes",
            backfill_s + reconcile_s,
            JOBS_TOTAL_S_MAX,
            "s",
            ratio_max=1.0,
        ),
        Target(
            "write p99 during the jobs vs before them",
            ratio,
            1.0,
            "x",
            ratio_max=WRITE_P99_RATIO_MAX,
        ),
        Target(
            "mirror lag p99 once imported (s) vs 5 s",
            lag_p99,
            MIRROR_LAG_P99_S_MAX,
            "s",
            ratio_max=1.0,
        ),
        Target(
            "writes paused in all, the server's (s) vs 2 s",
            paused_s,
            PAUSED_TOTAL_S_MAX,
            "s",
            ratio_max=1.0,
        ),
        *job_figures(walked, rates=rates, raw=raw),
    ]
    print_targets("targets (issue 25; measured under traffic, inputs measured before it)", targets)
    print_audit(traffic, final, result)
    clean = not (
        final.get("mismatched")
        or final.get("rows_without_account")
        or final.get("accounts_without_row")
    )
    mismatched = result.differing + (0 if clean else 1)
    print(
        f"moonshot: wallets={args.wallets} backfill_s={backfill_s:.1f} "
        f"reconcile_s={reconcile_s:.1f} write_p99_ratio={ratio:.2f} "
        f"lost={result.lost} mismatched={mismatched}"
    )
    return 1 if (result.lost or mismatched or traffic.tally.unexpected) else 0


def print_audit(traffic: Traffic, final: dict[str, float], result: Audit) -> None:
    tally = traffic.tally
    kinds: dict[str, int] = {}
    for write in tally.writes.values():
        kinds[write.kind] = kinds.get(write.kind, 0) + 1
    print("\naudit")
    print(f"  acknowledged: {kinds}, voids {len(tally.voided)}, holds {len(tally.placed_holds)}")
    print(
        f"  holds left open: {result.open_holds}, holding {result.held_minor} minor units "
        "(each wallet's `held` checked in both stores)"
    )
    print(f"  refused as expected: {dict(tally.refused) or 'none'}")
    print(f"  unexpected answers: {dict(tally.unexpected) or 'none'}")
    print(f"  answered only when asked again: {dict(tally.asked_again) or 'none'}")
    print(
        f"  final reconciliation: checked {final.get('checked', 0):g}, mismatched "
        f"{final.get('mismatched', 0):g}, rows without account "
        f"{final.get('rows_without_account', 0):g}, accounts without row "
        f"{final.get('accounts_without_row', 0):g}"
    )
    print(
        f"  {result.wallets} wallets in both stores against the tally: "
        f"{result.differing} differ, {result.doubled} above it in a store (a write doubled), "
        f"{result.lost} acknowledged ids missing from MongoDB's log or holds (lost)"
    )
    for line in result.mismatched[:20]:
        print(f"    {line}")


if __name__ == "__main__":
    sys.exit(main())
