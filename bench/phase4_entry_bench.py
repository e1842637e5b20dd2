"""Phase 4's entry: how long writes stay paused, comparing every wallet in the pause (before
issue 25) against comparing only the wallets changed since a clean full run (migration.entry_check).

    .venv/bin/python -m bench.phase4_entry_bench --wallets 100000 --changed 1000
    TB_ADDRESSES=127.0.0.1:3000 .venv/bin/python -m bench.phase4_entry_bench ...

Seeds N legacy wallets in a scratch MongoDB database, backfills them in phase 3, then:
1. every wallet compared in the pause (PHASE4_ENTRY_WALLETS_MAX = N, no earlier run: what
   every phase 4 entry did before): phase 3 -> 4, then back to 3;
2. a full reconciliation run (writes flowing meanwhile, timed apart), then --changed wallets
   credited and mirrored, the last --pending of them left for the pause's drain; then
   3 -> 4 with the default bound: only the changed wallets are compared in the pause.
Each step prints the writes paused (the WRITES_PAUSED flag's two audit rows) and the wallets
the pause compared.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from django.conf import settings
from django.utils import timezone

from bench.common import mongo_server, scratch_database
from bench.legacy import LegacySeed
from domain.batches import BatchItem, BatchItemKind
from domain.errors import StoreUnavailable
from flags.audit import apply_state
from flags.models import FlagChange, Milestone
from flags.phases import WRITES_PAUSED, Phase, state_for_phase
from ledger.backends import get_ledger_backend
from ledger.stores.mongo_database import MongoDatabase
from migration.models import ReconciliationRun
from migration.phase_change import change_phase
from migration.runtime import Runtime, install_process_runtime, process_runtime
from wallet_site.wiring import build_runtime

SEED = LegacySeed(run=uuid.uuid4().hex[:8])
WRITE_ATTEMPTS = 5
BATCH_ITEMS = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wallets", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=1_000, help="wallets written after the run")
    parser.add_argument("--pending", type=int, default=100, help="of them, left to the drain")
    parser.add_argument("--page-size", type=int, default=4_000, help="the backfill's page size")
    return parser.parse_args(argv)


def paused_s() -> float:
    """The last pause: its WRITES_PAUSED audit rows, paused then resumed."""
    paused, resumed = FlagChange.objects.filter(flag_name=WRITES_PAUSED).order_by("-pk")[:2][::-1]
    return (resumed.changed_at - paused.changed_at).total_seconds()


def step(runtime: Runtime, phase: Phase) -> tuple[float, float]:
    """Writes paused and the whole step's wall time, in seconds."""
    started = time.perf_counter()
    change_phase(phase, "bench", runtime.mongo, runtime.batches, note="phase 4 entry bench")
    return paused_s(), time.perf_counter() - started


def entry_compared() -> int:
    run = ReconciliationRun.objects.filter(triggered_by__startswith="entering phase 4").first()
    assert run is not None and not run.error and run.mismatched == 0, run
    return run.checked


def credit(runtime: Runtime, numbers: range) -> None:
    """A credit to each of these wallets, in one batch (the batch API's path: one MongoDB
    transaction; single writes took about 3 s each on the loaded VM's embedded server at
    100,000 wallets), sent again with the same ids while MongoDB answers StoreUnavailable."""
    items = [
        BatchItem(
            kind=BatchItemKind.CREDIT,
            key=SEED.key(number),
            amount_minor=1,
            transaction_id=f"bench-{SEED.run}-{number}",
        )
        for number in numbers
    ]
    for attempt in range(WRITE_ATTEMPTS):
        try:
            outcomes = runtime.mongo.post_batch(items, atomic=True, made_by="bench")
            assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
            return
        except StoreUnavailable:
            if attempt == WRITE_ATTEMPTS - 1:
                raise


def walk(runtime: Runtime, args: argparse.Namespace) -> None:
    apply_state(state_for_phase(Phase.READ_CUTOVER), actor="bench")
    started = time.perf_counter()
    report = runtime.backfill().run(page_size=args.page_size, progress=False)
    assert report.imported == args.wallets and not report.failed, report.failed[:5]
    print(f"backfill: {args.wallets:,} wallets in {time.perf_counter() - started:.1f} s")
    Milestone.objects.get_or_create(
        name=Milestone.BACKFILL_COMPLETED, defaults={"reached_at": timezone.now()}
    )

    settings.PHASE4_ENTRY_WALLETS_MAX = args.wallets
    paused, wall = step(runtime, Phase.TIGERBEETLE_ONLY)
    print(
        f"before: every wallet compared in the pause: {entry_compared():,} compared, "
        f"writes paused {paused:.2f} s (step {wall:.2f} s)"
    )
    paused_back, _ = step(runtime, Phase.READ_CUTOVER)
    print(f"back to phase 3: writes paused {paused_back:.2f} s")

    settings.PHASE4_ENTRY_WALLETS_MAX = 3_000
    run = runtime.reconciliation().run(triggered_by="bench: before phase 4")
    assert run.compared_every_wallet and run.mismatched == 0, run
    print(f"full reconciliation before the pause: {run.checked:,} wallets, {run.duration_s:.1f} s")
    mirrored = args.changed - args.pending
    for start in range(0, mirrored, BATCH_ITEMS):
        credit(runtime, range(start, min(mirrored, start + BATCH_ITEMS)))
    runtime.mirror().drain()
    credit(runtime, range(mirrored, args.changed))  # left for the pause's drain
    paused, wall = step(runtime, Phase.TIGERBEETLE_ONLY)
    print(
        f"after: only the changed wallets compared in the pause: {entry_compared():,} compared "
        f"({args.pending} drained in the pause), writes paused {paused:.2f} s (step {wall:.2f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings.MIGRATION_CRITERION_DAYS = 0
    settings.PHASE4_ENTRY_MARK_MARGIN_S = 0  # one process, one clock: no write is in flight
    with mongo_server() as mongo_url, scratch_database("phase4"):
        database = MongoDatabase(
            mongo_url, name=f"wallet_bench_{uuid.uuid4().hex[:6]}", timeout_s=300
        )
        runtime = build_runtime(
            scope=process_runtime().scope, mongo_database=database, backend=get_ledger_backend()
        )
        previous = install_process_runtime(runtime)
        try:
            print(f"seeding {args.wallets:,} legacy wallets ...", file=sys.stderr)
            SEED.seed(database, args.wallets)
            walk(runtime, args)
        finally:
            install_process_runtime(previous)
            database.client.drop_database(database.db.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
