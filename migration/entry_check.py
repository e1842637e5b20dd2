"""Phase 4's entry without a full reconciliation inside the pause (issue 25).

Entering phase 4 must prove, while writes are paused, that TigerBeetle holds every MongoDB
wallet with MongoDB's balance: MongoDB is not written afterwards. Comparing every wallet in
the pause cost about 13 s of 503s per 100,000 wallets. The proof is split in two instead:

- before the pause (`entry_basis`): the latest reconciliation run that compared every wallet
  (`ReconciliationRun.compared_every_wallet`) is clean (no wallet differing, none awaiting the
  backfill or outside the dual-write share, no error) and recent
  (PHASE4_ENTRY_RUN_MAX_AGE_S). Each wallet was equal in both stores at some moment after
  that run's start, its mark;
- inside the pause, after the mirror is drained (`check_in_pause`): every wallet either store
  may have changed since the mark is compared again. A wallet neither changed is equal still.

"Changed since the mark" (`changed_wallets`), each read on an index but the registry's:
- MongoDB wallet documents whose `updated_at` is at or after the mark: every write of a
  wallet sets it (single writes, batches, holds, copy-back), its creation too;
- log entries whose `mirror_updated_at` is at or after it: the mirror applied them to
  TigerBeetle then (or set them aside), so TigerBeetle's side of the wallet moved;
- wallets with an open hold that falls due between the mark and now (give or take
  PHASE4_ENTRY_MARK_MARGIN_S: the cluster's clock may run ahead), or one that expired
  since: a hold expires in both stores without a write. An open hold due later than that
  moved neither store's balance since the mark, however long it has been open: a wallet
  base with thousands of open holds would otherwise fill the pause with them, and refuse
  the step past PHASE4_ENTRY_WALLETS_MAX;
- wallets the backfill imported after the run started (`WalletAccount.imported_at`): a legacy
  document the run's scan had passed already;
- wallets whose mismatch support resolved after the run started (a repair can flag copy-backs).

The mark of MongoDB's writes is the run's start less PHASE4_ENTRY_MARK_MARGIN_S: a write that
took its time before the mark but committed after the run read its wallet must still count as
changed, so the margin must exceed the longest write transaction (MongoDB aborts one after
its transactionLifetimeLimitSeconds, 60 s by default) and the clock skew between hosts. The
registry's marks are the run's start itself: an import before it was there for the run to
compare (a clean run has none awaiting the backfill), and a backfill that ends just before
the run must not make every wallet it imported count as changed.

Every writer of MongoDB's wallet documents is the store (which sets `updated_at`): a document
written behind its back, without the log, is found by a full run only.

Under live traffic the run itself takes minutes, and every wallet written meanwhile counts as
changed. So before the pause, while clients write, `catch_up` compares the changed wallets
(each looked at until it stands still across its reads) and, all agreeing, makes that pass
the basis; again until few wallets changed since the last pass (CATCH_UP_LEFT_FOR_THE_PAUSE)
or a pass stops shrinking what is left. A wallet that differs refuses the step before any
pause. More than PHASE4_ENTRY_WALLETS_MAX changed wallets left then refuse it too, so the
pause's work is bounded; what is left is about the margin's writes and the open holds. A
deployment whose whole wallet base is within that bound needs no earlier run: every wallet is
compared in the pause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from domain.holds import HoldState
from domain.ids import WalletKey
from flags.phases import InvalidPhaseChange
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.batches import LedgerBatches
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import MONGO_KEY_FIELDS, key_of
from ledger.stores.mongo_store import MongoWalletStore
from migration.legacy_scan import LegacyScan
from migration.models import ReconciliationMismatch, ReconciliationRun
from migration.outbox import MirrorOutbox
from migration.reconciliation import Reconciliation
from registry.models import WalletAccount

log = logging.getLogger(__name__)
NAMED_WALLETS_MAX = 10
# Before the pause (`catch_up`): passes end once at most this many wallets changed since the
# last one, or once a pass leaves more than CATCH_UP_SHRINK_RATIO of what the one before it
# compared (writes arrive as fast as it compares), after at most CATCH_UP_PASSES_MAX passes.
CATCH_UP_LEFT_FOR_THE_PAUSE = 200
CATCH_UP_SHRINK_RATIO = 0.8
CATCH_UP_PASSES_MAX = 8
# Changed wallets a pass reads at most (keys held in memory at once).
CHANGED_READ_MAX = 1_000_000
_WALLET_MISMATCHES = (
    ReconciliationMismatch.Kind.BALANCE,
    ReconciliationMismatch.Kind.NOT_IN_TIGERBEETLE,
)
_KEY_PROJECTION = {**dict.fromkeys(MONGO_KEY_FIELDS, 1), "_id": 0}


@dataclass(frozen=True)
class EntryBasis:
    """What the pause compares: the wallets changed since `run` started (MongoDB's writes
    since `since`, its start less the margin), or every wallet (`run` None: the wallet base is
    within the bound)."""

    run: ReconciliationRun | None
    since: datetime | None


def entry_refusal(database: MongoDatabase) -> str | None:
    """Why phase 4's entry would be refused before the pause now (None: it would not), for
    the step's plan: the phase page shows it before anyone confirms."""
    try:
        entry_basis(database)
    except InvalidPhaseChange as refused:
        return str(refused)
    return None


def entry_basis(database: MongoDatabase) -> EntryBasis:
    """Before the pause: the run the pause builds on, or InvalidPhaseChange saying why there
    is none (and that reconciliation must run again). How many wallets changed since it is
    `catch_up`'s business."""
    bound = settings.PHASE4_ENTRY_WALLETS_MAX
    run = latest_full_run()
    problem = why_not_a_basis(run)
    if run is not None and problem is None:
        return EntryBasis(run=run, since=_mark(run))
    total = LegacyScan(database).wallet_count()
    if total <= bound:
        return EntryBasis(run=None, since=None)
    raise InvalidPhaseChange(
        f"phase 4 compares in the pause only the wallets changed since a clean reconciliation "
        f"of every wallet, and {problem}; run reconciliation (the back-office's run now, or "
        "manage.py reconcile) and take the step soon after it finishes"
    )


def catch_up(
    mongo: MongoWalletStore, tigerbeetle: LedgerBatches, basis: EntryBasis, *, actor: str
) -> tuple[EntryBasis, int]:
    """Before the pause, while clients write: compare the wallets changed since the basis's
    mark, each looked at until it stands still across its reads (`Reconciliation.looks`);
    all agreeing, each was equal at some moment after this pass started, which becomes the
    basis. Passes go on until at most CATCH_UP_LEFT_FOR_THE_PAUSE (and the bound) wallets
    changed since the last one, or what changed stops shrinking (writes arrive as fast as a
    pass compares). Then at most PHASE4_ENTRY_WALLETS_MAX may be left for the pause, else
    InvalidPhaseChange; so is a wallet that differs, before any pause. Returns the basis
    and how many wallets the passes compared."""
    if basis.run is None or basis.since is None:
        return basis, 0  # the whole (small) wallet base is compared in the pause
    bound = settings.PHASE4_ENTRY_WALLETS_MAX
    built_on, since = basis.run, basis.since
    left: int | None = None
    compared = 0
    for _ in range(CATCH_UP_PASSES_MAX):
        changed = changed_wallets(
            mongo.database, since=since, run_started=built_on.started_at, limit=CHANGED_READ_MAX
        )
        shrinking = left is None or len(changed) < left * CATCH_UP_SHRINK_RATIO
        if len(changed) <= min(CATCH_UP_LEFT_FOR_THE_PAUSE, bound) or not shrinking:
            break
        left = len(changed)
        reconciliation = _reconciliation(mongo, tigerbeetle)
        run = ReconciliationRun.objects.create(
            triggered_by=f"before phase 4's pause ({actor})",
            wallets_total=len(changed),
            note=f"phase 4's entry, before the pause: the wallets changed since run {built_on.pk}",
        )
        _compare(reconciliation, sorted(changed, key=WalletKey.sort_key), run, live=True)
        if run.error:
            raise InvalidPhaseChange(f"reconciliation run {run.pk} failed: {run.error}")
        _refuse_unless_all_held(run, reconciliation)
        compared += run.checked
        built_on, since = run, _mark(run)
    else:
        changed = changed_wallets(
            mongo.database, since=since, run_started=built_on.started_at, limit=bound + 1
        )
    if len(changed) > bound:
        raise InvalidPhaseChange(
            f"more than {bound} wallets changed since reconciliation run {built_on.pk} "
            "(PHASE4_ENTRY_WALLETS_MAX), as fast as they could be compared before the pause; "
            "take the step when fewer clients write"
        )
    return EntryBasis(run=built_on, since=since), compared


def _mark(run: ReconciliationRun) -> datetime:
    """MongoDB's writes since when count as changed after `run`: its start less the margin
    a write's transaction may take between its time and its commit."""
    return run.started_at - timedelta(seconds=settings.PHASE4_ENTRY_MARK_MARGIN_S)


def latest_full_run() -> ReconciliationRun | None:
    """The latest finished run that compared every MongoDB wallet (clean or not)."""
    return (
        ReconciliationRun.objects.filter(compared_every_wallet=True, finished_at__isnull=False)
        .order_by("-started_at")
        .first()
    )


def why_not_a_basis(run: ReconciliationRun | None) -> str | None:
    """Why `run` cannot be what phase 4's entry builds on (None: it can)."""
    if run is None:
        return "no reconciliation run has compared every wallet yet"
    age_s = (timezone.now() - run.started_at).total_seconds()
    if age_s > settings.PHASE4_ENTRY_RUN_MAX_AGE_S:
        return (
            f"the latest one (run {run.pk}) started {age_s:.0f} s ago, more than "
            f"PHASE4_ENTRY_RUN_MAX_AGE_S ({settings.PHASE4_ENTRY_RUN_MAX_AGE_S:.0f} s)"
        )
    if run.error:
        return f"the latest one (run {run.pk}) failed: {run.error[:200]}"
    if run.mismatched or run.awaiting_backfill or run.outside_share:
        return (
            f"the latest one (run {run.pk}) was not clean: {run.mismatched} wallet(s) "
            f"differing, {run.awaiting_backfill} awaiting the backfill, {run.outside_share} "
            "outside the dual-write share"
        )
    return None


def changed_wallets(
    database: MongoDatabase, *, since: datetime, run_started: datetime, limit: int
) -> set[WalletKey]:
    """The wallets either store may have changed since the full run that started at
    `run_started` (MongoDB's writes since `since`; the module's list), read until there are
    `limit` of them."""
    assert limit > 0
    keys: set[WalletKey] = set()

    def mongo_reads() -> None:
        for key in _mongo_changed(database, since=since):
            keys.add(key)
            if len(keys) >= limit:
                return

    database.guarded(mongo_reads)
    for key in _registry_changed(since=run_started):
        if len(keys) >= limit:
            break
        keys.add(key)
    return keys


def _mongo_changed(database: MongoDatabase, *, since: datetime) -> Iterator[WalletKey]:
    due_by = timezone.now() + timedelta(seconds=settings.PHASE4_ENTRY_MARK_MARGIN_S)
    cursors: list[Iterable[dict[str, Any]]] = [
        database.wallets().find({"updated_at": {"$gte": since}}, _KEY_PROJECTION),
        database.log().find({"mirror_updated_at": {"$gte": since}}, _KEY_PROJECTION),
        database.holds().find(
            {"state": HoldState.OPEN.value, "expires_at": {"$gte": since, "$lte": due_by}},
            _KEY_PROJECTION,
        ),
        database.holds().find(
            {"state": HoldState.EXPIRED.value, "expires_at": {"$gte": since}}, _KEY_PROJECTION
        ),
    ]
    for cursor in cursors:
        for document in cursor:
            yield key_of(document)


def _registry_changed(*, since: datetime) -> Iterator[WalletKey]:
    for row in WalletAccount.objects.filter(imported_at__gte=since).iterator(chunk_size=2000):
        yield row.key
    resolved = ReconciliationMismatch.objects.filter(resolved_at__gte=since).exclude(client_id="")
    for mismatch in resolved.iterator(chunk_size=2000):
        yield WalletKey.from_row(mismatch)


def check_in_pause(
    mongo: MongoWalletStore, tigerbeetle: LedgerBatches, basis: EntryBasis, *, actor: str
) -> ReconciliationRun:
    """Inside the pause, the mirror drained: compare what `basis` says (recorded as a
    reconciliation run), or raise InvalidPhaseChange naming the wallets TigerBeetle does not
    hold with MongoDB's balance."""
    reconciliation = _reconciliation(mongo, tigerbeetle)
    triggered_by = f"entering phase 4 ({actor})"
    if basis.run is None or basis.since is None:
        run = reconciliation.run(triggered_by=triggered_by)
    else:
        run = _compare_changed(
            reconciliation, basis_run=basis.run, since=basis.since, triggered_by=triggered_by
        )
    if run.error:
        raise InvalidPhaseChange(f"the final reconciliation (run {run.pk}) failed: {run.error}")
    _refuse_unless_all_held(run, reconciliation)
    return run


def _reconciliation(mongo: MongoWalletStore, tigerbeetle: LedgerBatches) -> Reconciliation:
    return Reconciliation(LegacyScan(mongo.database), MirrorOutbox(mongo.database), tigerbeetle)


def _compare_changed(
    reconciliation: Reconciliation,
    *,
    basis_run: ReconciliationRun,
    since: datetime,
    triggered_by: str,
) -> ReconciliationRun:
    """Inside the pause: the wallets changed since `since`, compared in pages and recorded
    as a run."""
    bound = settings.PHASE4_ENTRY_WALLETS_MAX
    keys = sorted(
        changed_wallets(
            reconciliation.scan.database,
            since=since,
            run_started=basis_run.started_at,
            limit=bound + 1,
        ),
        key=WalletKey.sort_key,
    )
    if len(keys) > bound:
        raise InvalidPhaseChange(
            f"more than {bound} wallets changed since reconciliation run {basis_run.pk} "
            "(PHASE4_ENTRY_WALLETS_MAX); run reconciliation again and take the step soon after"
        )
    run = ReconciliationRun.objects.create(
        triggered_by=triggered_by,
        wallets_total=len(keys),
        note=f"phase 4's entry: the wallets changed since run {basis_run.pk}",
    )
    _compare(reconciliation, keys, run, live=False)
    log.info(
        "phase 4's entry: %d wallets changed since run %s compared, %d differ (%.3f s)",
        run.checked,
        basis_run.pk,
        run.mismatched,
        run.duration_s,
    )
    return run


def _compare(
    reconciliation: Reconciliation, keys: list[WalletKey], run: ReconciliationRun, *, live: bool
) -> None:
    """Compare `keys` in pages into `run` and finish it: `live`, while clients write (each
    wallet looked at until it stands still), else in the pause (one read of each store)."""
    started = time.perf_counter()
    mismatches: list[ReconciliationMismatch] = []
    try:
        for start in range(0, len(keys), BATCH_EVENTS_MAX):
            page = keys[start : start + BATCH_EVENTS_MAX]
            looks = reconciliation.looks(page) if live else reconciliation.read_both(page)
            for look in looks:
                snapshot, mongo_balance, tb_balance = look.snapshot, look.mongo, look.tigerbeetle
                if tb_balance is None and not snapshot.log_complete:
                    reconciliation.count_awaiting(mongo_balance.key)
                    continue
                run.checked += 1
                if tb_balance == mongo_balance:
                    run.matched += 1
                    continue
                run.mismatched += 1
                mismatches.append(reconciliation.balance_mismatch(run, mongo_balance, tb_balance))
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.exception("phase 4's entry check (run %s) failed", run.pk)
    ReconciliationMismatch.objects.bulk_create(mismatches, batch_size=1000)
    run.awaiting_backfill = reconciliation.awaiting_backfill
    run.finished_at = timezone.now()
    run.duration_s = time.perf_counter() - started
    run.save()


def _refuse_unless_all_held(run: ReconciliationRun, reconciliation: Reconciliation) -> None:
    """InvalidPhaseChange naming (some of) the wallets the run found TigerBeetle lacking."""
    named = [
        f"{WalletKey.from_row(m).describe()}"
        f" ({'balance differs' if m.kind == ReconciliationMismatch.Kind.BALANCE else 'missing'})"
        for m in run.mismatches.filter(kind__in=_WALLET_MISMATCHES)[:NAMED_WALLETS_MAX]
    ]
    named += [
        f"{key.describe()} (not backfilled)"
        for key in reconciliation.awaiting_backfill_keys[: NAMED_WALLETS_MAX - len(named)]
    ]
    lacking = run.mismatched + run.awaiting_backfill + run.outside_share
    if lacking:
        more = f" and {lacking - len(named)} more" if lacking > len(named) else ""
        raise InvalidPhaseChange(
            f"TigerBeetle does not hold {lacking} MongoDB wallet(s) with the same balance "
            f"(reconciliation run {run.pk}): {', '.join(named)}{more}; "
            "fix them (support's re-check shows both stores) and try again"
        )
