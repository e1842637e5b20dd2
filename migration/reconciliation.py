"""Reconciliation: every wallet compared in both stores, and both registries with TigerBeetle.

Four passes, all batched (lookups of up to 8189 accounts, MongoDB pages in key order):
1. registry -> TigerBeetle: each row's account is looked up; a row whose account is missing is
   recorded (`row_no_account`);
2. TigerBeetle -> registry: every wallet account of this application's wallet code
   (TB_WALLET_ACCOUNT_CODE, paged by timestamp) must have a row (`account_no_row`); accounts of
   other applications sharing the cluster carry other codes and are never looked at;
   then the transfer registry against TigerBeetle, both ways (`migration.transfer_check`);
3. MongoDB -> TigerBeetle: credit, debit and historical credit of every wallet must match. A
   wallet that differs is looked at again before it counts: MongoDB, then the mirror, then
   TigerBeetle, then MongoDB's seq once more, again while a live write moves it between
   those reads (LOOKS_MAX), so neither replication lag nor a write in flight is reported
   as a mismatch. Legacy wallets the backfill has not imported yet are
   counted apart (`awaiting_backfill`), not as mismatches; so, before dual write (phase 0),
   are wallets TigerBeetle does not hold and wallets whose writes wait in the outbox: an
   alert must mean money is wrong.

Pass 3 compares only wallets of clients inside the dual-write share (the share is read for
each page): TigerBeetle is not kept current for the others, which are counted apart
(`outside_share`). In phase 4 MongoDB is no longer written, so pass 3 is skipped. A run
with mismatches raises alerts (`migration.alerts`: an ERROR log line, and a JSON POST to
ALERT_WEBHOOK_URL when an alert opens): one for the run's problems while it stays open,
and one per differing wallet.

A run shows its progress while it works: its row holds the wallets it compares
(`wallets_total`, MongoDB's count when it started) and is updated after each page of pass 3
with the wallets checked so far, so the back-office can show "12,000 of 20,000".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone

from domain.ids import WalletKey, u128_to_hex
from domain.wallets import WalletBalance
from flags.phases import Phase, current_state
from ledger import metrics
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.batches import LedgerBatches
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_holds import live_held_minor_of
from ledger.tb_model import balance_from_account, of_deployment
from migration import alerts
from migration.legacy_cases import AcknowledgedCases
from migration.legacy_scan import LegacyScan, WalletSnapshot
from migration.mirror import Mirror
from migration.models import Alert, ReconciliationMismatch, ReconciliationRun
from migration.outbox import MirrorOutbox, MirrorState
from migration.transfer_check import TransferCheck, WalletLedger
from registry import accounts as account_registry
from registry.models import WalletAccount

log = logging.getLogger(__name__)
# Wallets of one run given an alert of their own (the run's alert counts them all).
ALERTED_MISMATCHES_MAX = 100
AWAITING_KEYS_KEPT = 20
WALLET_SEQ_MAX = 2**62
# Looks a differing wallet gets while live writes keep moving it between its reads.
LOOKS_MAX = 5


@dataclass(frozen=True)
class Look:
    """One wallet read in both stores: MongoDB (its document, and its balance as a client
    reads it), then TigerBeetle; `moved`: MongoDB's seq changed before the look ended."""

    snapshot: WalletSnapshot
    mongo: WalletBalance
    tigerbeetle: WalletBalance | None
    moved: bool

    @property
    def agrees(self) -> bool:
        return self.mongo == self.tigerbeetle


class Reconciliation:
    def __init__(self, scan: LegacyScan, outbox: MirrorOutbox, tigerbeetle: LedgerBatches) -> None:
        """`scan` reads MongoDB's wallets, `outbox` says which of their writes wait for the
        mirror (and feeds the mirror a differing wallet gets before its second look)."""
        self.scan = scan
        self.outbox = outbox
        self.tigerbeetle = tigerbeetle
        self.awaiting_backfill = 0
        # The first few wallets counted apart, so a refusal can name them.
        self.awaiting_backfill_keys: list[WalletKey] = []

    def run(
        self,
        triggered_by: str = "schedule",
        page_size: int = BATCH_EVENTS_MAX,
        *,
        queued: ReconciliationRun | None = None,
    ) -> ReconciliationRun:
        """One run, recorded; `queued`: the row a person's request created for it (the run
        list shows it queued until a worker takes it)."""
        started = time.perf_counter()
        run = queued or ReconciliationRun(triggered_by=triggered_by)
        run.started_at = timezone.now()
        run.wallets_total = 0
        run.save()
        mismatches: list[ReconciliationMismatch] = []
        # MongoDB's count, and the real client's opening-pair lookups, overlap the passes.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconciliation") as background:
            try:
                self._passes(run, mismatches, page_size=page_size, background=background)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"[:2000]
                log.exception("reconciliation run %s failed", run.pk)
        ReconciliationMismatch.objects.bulk_create(mismatches, batch_size=1000)
        run.awaiting_backfill = self.awaiting_backfill
        run.finished_at = timezone.now()
        run.duration_s = time.perf_counter() - started
        run.save()
        self._publish(run)
        return run

    def _passes(
        self,
        run: ReconciliationRun,
        mismatches: list[ReconciliationMismatch],
        *,
        page_size: int,
        background: ThreadPoolExecutor,
    ) -> None:
        compares_mongo = current_state().phase != Phase.TIGERBEETLE_ONLY
        total = background.submit(self.scan.wallet_count) if compares_mongo else None
        account_ids, wallets = self._registry_against_tigerbeetle(run, mismatches, page_size)
        transfers = TransferCheck(
            self.tigerbeetle, run=run, mismatches=mismatches, page_size=page_size
        )
        threads = self.tigerbeetle.callable_from_any_thread
        transfers.start(wallets, background=background if threads else None)
        if total is not None:
            run.wallets_total = total.result()
            _save_progress(run)
            self._mongo_against_tigerbeetle(run, account_ids, mismatches, page_size)
            # Every MongoDB wallet was compared at some moment after the run started: what
            # phase 4's entry builds on (migration.entry_check).
            run.compared_every_wallet = True
        else:
            run.note = "phase 4: MongoDB is not written, so only the registries were checked"
        transfers.finish()
        _save_progress(run)

    def recheck(self, key: WalletKey) -> tuple[WalletBalance | None, WalletBalance | None]:
        """One wallet, now (support's re-check): mirrored first, then both stores read."""
        snapshot = self.scan.snapshots([key]).get(key)
        if snapshot is None:
            registered = account_registry.find_account(key)
            tb = None
            if registered is not None:
                accounts = self.tigerbeetle.lookup_accounts([registered.tb_account_id])
                tb = balance_from_account(key, accounts[0]) if accounts else None
            return None, tb
        (look,) = self.looks([key])
        return look.mongo, look.tigerbeetle

    # --- passes -------------------------------------------------------------------------------

    def _registry_against_tigerbeetle(
        self,
        run: ReconciliationRun,
        mismatches: list[ReconciliationMismatch],
        page_size: int,
    ) -> tuple[dict[WalletKey, int], dict[int, WalletLedger]]:
        """Pass 1 and 2; returns the account id of every registered wallet TigerBeetle holds,
        by key, and its account's posted amounts by registry pk (for the transfer pass)."""
        account_ids: dict[WalletKey, int] = {}
        wallets: dict[int, WalletLedger] = {}
        last_pk = 0
        while True:
            rows = list(WalletAccount.objects.filter(pk__gt=last_pk).order_by("pk")[:page_size])
            if not rows:
                break
            last_pk = rows[-1].pk
            accounts = {
                account.id: account
                for account in self.tigerbeetle.lookup_accounts([row.tb_account_id for row in rows])
            }
            for row in rows:
                account = accounts.get(row.tb_account_id)
                if account is None:
                    run.rows_without_account += 1
                    mismatches.append(
                        _mismatch(run, ReconciliationMismatch.Kind.ROW_WITHOUT_ACCOUNT, row)
                    )
                    continue
                key = row.key  # built from the row's columns: once
                account_ids[key] = account.id
                wallets[row.pk] = WalletLedger(
                    registry_pk=row.pk,
                    key=key,
                    tb_account_id=account.id,
                    imported=row.imported_at is not None,
                    credits_posted=account.credits_posted,
                    debits_posted=account.debits_posted,
                    opening=_opening_of(row),
                )
        for page_ids in wallet_account_id_pages(self.tigerbeetle, page_size):
            # One page of TigerBeetle's ids against the registry: never every id at once.
            ids_hex = [u128_to_hex(account_id) for account_id in page_ids]
            registered = set(
                WalletAccount.objects.filter(tb_account_id_hex__in=ids_hex).values_list(
                    "tb_account_id_hex", flat=True
                )
            )
            for account_id_hex in ids_hex:
                if account_id_hex not in registered:
                    run.accounts_without_row += 1
                    mismatches.append(
                        ReconciliationMismatch(
                            run=run,
                            kind=ReconciliationMismatch.Kind.ACCOUNT_WITHOUT_ROW,
                            tb_account_id_hex=account_id_hex,
                        )
                    )
        return account_ids, wallets

    def _mongo_against_tigerbeetle(
        self,
        run: ReconciliationRun,
        account_ids: dict[WalletKey, int],
        mismatches: list[ReconciliationMismatch],
        page_size: int,
    ) -> None:
        """Pass 3. Before dual write (phase 0) TigerBeetle only holds what was backfilled or
        mirrored while dual write was on: a wallet it lacks, or one whose later writes wait in
        the outbox, has nothing to be compared with yet and is counted apart, not alerted."""
        dual_write = current_state().dual_write
        for page in self.scan.wallet_batches(page_size):
            differing: list[WalletSnapshot] = []
            compared: list[tuple[WalletSnapshot, WalletBalance | None]] = []
            state = current_state()
            # TigerBeetle read just after the page: only a write in flight between the two
            # reads makes a wallet differ, not every write since the run began (minutes at a
            # million wallets under live traffic: thousands of second looks).
            tb_balances = _balances_of_accounts(
                self.tigerbeetle,
                {
                    s.balance.key: account_ids[s.balance.key]
                    for s in page
                    if s.balance.key in account_ids
                },
            )
            for snapshot in page:
                key = snapshot.balance.key
                if not state.in_dual_write_share(key.client_id):
                    run.outside_share += 1
                    continue
                found = tb_balances.get(key)
                if found is None and (not snapshot.log_complete or not dual_write):
                    self.count_awaiting(key)
                    continue
                compared.append((snapshot, found))
            mongo_balances = client_balances(
                self.scan.database, [snapshot for snapshot, _ in compared]
            )
            for (snapshot, found), mongo_balance in zip(compared, mongo_balances, strict=True):
                if found == mongo_balance:
                    run.checked += 1
                    run.matched += 1
                else:
                    differing.append(snapshot)
            for look in self.looks([snapshot.balance.key for snapshot in differing]):
                key, mongo, tb_balance = look.snapshot.balance.key, look.mongo, look.tigerbeetle
                if tb_balance != mongo and not dual_write and self._only_waiting(key):
                    self.count_awaiting(key)  # its writes wait for dual write
                    continue
                run.checked += 1
                if tb_balance == mongo:
                    run.matched += 1
                    continue
                run.mismatched += 1
                mismatches.append(self.balance_mismatch(run, mongo, tb_balance))
            run.awaiting_backfill = self.awaiting_backfill
            _save_progress(run)
        if not dual_write:
            run.note = (
                "before dual write: only wallets TigerBeetle holds with no write waiting in "
                "the outbox are compared; the others are counted as awaiting"
            )

    def _only_waiting(self, key: WalletKey) -> bool:
        """Whether the wallet has writes waiting for dual write, and none parked (a parked
        entry is one TigerBeetle refused: the stores have diverged)."""
        waiting = self.outbox.unmirrored_up_to(key, WALLET_SEQ_MAX)
        return bool(waiting) and MirrorState.PARKED not in waiting

    def count_awaiting(self, key: WalletKey) -> None:
        self.awaiting_backfill += 1
        if len(self.awaiting_backfill_keys) < AWAITING_KEYS_KEPT:
            self.awaiting_backfill_keys.append(key)

    def looks(self, wanted: list[WalletKey]) -> list[Look]:
        """These wallets (those MongoDB holds), each mirrored and read in both stores until it
        stands still across its reads: a write landing between them (a live client's) would
        show as a difference that is not there. A wallet still moving after LOOKS_MAX looks
        is reported as it last read."""
        looks: dict[WalletKey, Look] = {}
        keys = list(wanted)
        for _ in range(LOOKS_MAX):
            moving = []
            for look in self._look(keys):
                key = look.snapshot.balance.key
                looks[key] = look
                if look.moved and not look.agrees:
                    moving.append(key)
            if not moving:
                break
            keys = moving
        return [looks[key] for key in wanted if key in looks]

    def _look(self, keys: list[WalletKey]) -> list[Look]:
        """MongoDB first, then the mirror, then TigerBeetle, then MongoDB's seq again: a
        wallet whose seq did not move was read at one moment in both stores."""
        if not keys:
            return []
        before = self.scan.snapshots(keys)
        keys = [key for key in keys if key in before]
        mongo = dict(
            zip(
                keys,
                client_balances(self.scan.database, [before[key] for key in keys]),
                strict=True,
            )
        )
        if current_state().mirrors_to_tigerbeetle:
            # One batch: what waits now, the entries up to the seqs just read among them. A
            # drain to the end would chase live writes to these wallets.
            Mirror(self.outbox, self.tigerbeetle).drain(keys=keys, max_batches=1)
        tigerbeetle = tigerbeetle_balances(self.tigerbeetle, keys)
        after = self.scan.snapshots(keys)
        return [
            Look(
                snapshot=before[key],
                mongo=mongo[key],
                tigerbeetle=tigerbeetle.get(key),
                moved=key in after and after[key].wallet_seq != before[key].wallet_seq,
            )
            for key in keys
        ]

    def read_both(self, keys: list[WalletKey]) -> list[Look]:
        """These wallets (those MongoDB holds) read once in each store, in a few batched
        reads: for wallets nobody writes meanwhile (phase 4's entry reads them inside its
        pause)."""
        fresh = self.scan.snapshots(keys)
        keys = [key for key in keys if key in fresh]
        mongo = client_balances(self.scan.database, [fresh[key] for key in keys])
        tigerbeetle = tigerbeetle_balances(self.tigerbeetle, keys)
        return [
            Look(snapshot=fresh[key], mongo=balance, tigerbeetle=tigerbeetle.get(key), moved=False)
            for key, balance in zip(keys, mongo, strict=True)
        ]

    def balance_mismatch(
        self, run: ReconciliationRun, mongo: WalletBalance, tb: WalletBalance | None
    ) -> ReconciliationMismatch:
        """The mismatch row of a wallet whose balances differ (`tb` None: TigerBeetle lacks
        it), with the entries still waiting for the mirror."""
        key = mongo.key
        waiting = self.outbox.unmirrored_up_to(key, WALLET_SEQ_MAX)
        return ReconciliationMismatch(
            run=run,
            kind=(
                ReconciliationMismatch.Kind.NOT_IN_TIGERBEETLE
                if tb is None
                else ReconciliationMismatch.Kind.HELD
                if _posted(tb) == _posted(mongo)
                else ReconciliationMismatch.Kind.BALANCE
            ),
            **key.as_columns(),
            mongo_credit_minor=mongo.credit_minor,
            mongo_debit_minor=mongo.debit_minor,
            mongo_historical_credit_minor=mongo.historical_credit_minor,
            tb_credit_minor=tb.credit_minor if tb else None,
            tb_debit_minor=tb.debit_minor if tb else None,
            tb_historical_credit_minor=tb.historical_credit_minor if tb else None,
            pending_mirror_entries=sum(waiting.values()),
            mongo_held_minor=mongo.held_minor,
            tb_held_minor=tb.held_minor if tb else None,
        )

    # --- results ------------------------------------------------------------------------------

    def _publish(self, run: ReconciliationRun) -> None:
        metrics.RECONCILIATION_WALLETS.labels("checked").set(run.checked)
        metrics.RECONCILIATION_WALLETS.labels("matched").set(run.matched)
        metrics.RECONCILIATION_WALLETS.labels("mismatched").set(run.mismatched)
        metrics.RECONCILIATION_WALLETS.labels("awaiting_backfill").set(self.awaiting_backfill)
        metrics.RECONCILIATION_SECONDS.set(run.duration_s or 0)
        problems = (
            run.mismatched
            + run.rows_without_account
            + run.accounts_without_row
            + run.transfer_differences
        )
        if not problems and not run.error:
            log.info(
                "reconciliation: %d wallets checked, all %d match (%.2f s)",
                run.checked,
                run.matched,
                run.duration_s or 0,
            )
            return
        summary: dict[str, Any] = {
            "run_id": run.pk,
            "checked": run.checked,
            "mismatched": run.mismatched,
            "rows_without_account": run.rows_without_account,
            "accounts_without_row": run.accounts_without_row,
            "transfer_differences": run.transfer_differences,
            "error": run.error,
        }
        log.error("reconciliation alert: %s", summary)
        batch = alerts.AlertBatch()
        batch.raise_alert(
            Alert.Kind.RECONCILIATION_RUN,
            case="reconciliation found problems",
            figures=summary,
            link=reverse("admin:migration_reconciliationrun_change", args=[run.pk]),
        )
        _alert_mismatches(run, batch)


def wallet_account_id_pages(tigerbeetle: LedgerBatches, page_size: int) -> Iterator[list[int]]:
    """This deployment's wallet account ids in TigerBeetle, a page at a time (by
    timestamp): its wallet code, and its stamp or none (accounts created before stamps).
    Another deployment's on a shared cluster are none of its business."""
    assert 0 < page_size <= BATCH_EVENTS_MAX
    ids = tigerbeetle.scope.ids
    timestamp_min = 0
    while True:
        page = tigerbeetle.wallet_accounts_page(timestamp_min=timestamp_min, limit=page_size)
        own = [account.id for account in page if of_deployment(account, ids=ids)]
        if own:
            yield own
        if len(page) < page_size:
            return
        timestamp_min = page[-1].timestamp + 1


def _balances_of_accounts(
    tigerbeetle: LedgerBatches, account_ids: dict[WalletKey, int]
) -> dict[WalletKey, WalletBalance]:
    """TigerBeetle's balance of each wallet whose account it holds, by key (lookups of up to
    BATCH_EVENTS_MAX accounts)."""
    by_id = {account_id: key for key, account_id in account_ids.items()}
    ids = list(by_id)
    balances = {}
    for start in range(0, len(ids), BATCH_EVENTS_MAX):
        for account in tigerbeetle.lookup_accounts(ids[start : start + BATCH_EVENTS_MAX]):
            key = by_id[account.id]
            balances[key] = balance_from_account(key, account)
    return balances


def client_balances(
    database: MongoDatabase, snapshots: list[WalletSnapshot]
) -> list[WalletBalance]:
    """MongoDB's balance of each as a client reads it, to compare with TigerBeetle's:
    available and held (its holds open now) beside the posted debit and historical
    credit. Only wallets whose document holds anything have their holds read, together."""
    holding = [s.balance.key for s in snapshots if s.recorded_held_minor]
    held: dict[WalletKey, int] = {}
    if holding:
        held = database.read(lambda: live_held_minor_of(database, holding, now=datetime.now(UTC)))
    balances = []
    for snapshot in snapshots:
        posted = snapshot.balance
        live = held.get(posted.key, 0)
        balances.append(
            replace(posted, credit_minor=posted.credit_minor - live, held_minor=live)
            if snapshot.recorded_held_minor
            else posted
        )
    return balances


def tigerbeetle_balances(
    tigerbeetle: LedgerBatches, keys: list[WalletKey]
) -> dict[WalletKey, WalletBalance]:
    """TigerBeetle's balance of each registered wallet TigerBeetle holds, by key."""
    rows = account_registry.rows_by_key(keys)
    return _balances_of_accounts(
        tigerbeetle, {key: rows[key].tb_account_id for key in keys if key in rows}
    )


def _alert_mismatches(run: ReconciliationRun, batch: alerts.AlertBatch) -> None:
    """One open alert per wallet (or account) that differs, for the first
    ALERTED_MISMATCHES_MAX of a run; acknowledged legacy wallets' known difference is set
    aside. The run's own alert counts them all."""
    cases = AcknowledgedCases()
    for mismatch in run.mismatches.order_by("pk")[:ALERTED_MISMATCHES_MAX]:
        if cases.sets_aside(mismatch):
            continue
        key = WalletKey.from_row(mismatch) if mismatch.client_id else None
        case = (
            alerts.wallet_case(key)
            if key is not None
            else f"TigerBeetle account {mismatch.tb_account_id_hex}"
        )
        batch.raise_alert(
            Alert.Kind.RECONCILIATION_MISMATCH,
            case=case,
            wallet=key,
            figures=_mismatch_figures(mismatch),
            link=reverse("admin:migration_reconciliationmismatch_change", args=[mismatch.pk]),
        )


def _mismatch_figures(mismatch: ReconciliationMismatch) -> dict[str, Any]:
    return {
        "run_id": mismatch.run_id,
        "mismatch_id": mismatch.pk,
        "kind": mismatch.kind,
        "currency": mismatch.currency,
        "mongo_minor": [
            mismatch.mongo_credit_minor,
            mismatch.mongo_debit_minor,
            mismatch.mongo_historical_credit_minor,
        ],
        "tigerbeetle_minor": [
            mismatch.tb_credit_minor,
            mismatch.tb_debit_minor,
            mismatch.tb_historical_credit_minor,
        ],
        "fields": ["credit", "debit", "historical_credit"],
        "transaction_id": mismatch.transaction_id,
        "registered_amount_minor": mismatch.registered_amount_minor,
        "tigerbeetle_amount_minor": mismatch.tb_amount_minor,
        "detail": mismatch.detail,
    }


def _posted(balance: WalletBalance) -> tuple[int, int, int]:
    """The posted amounts of a balance (available + held is posted credit - posted debit)."""
    return (
        balance.credit_minor + balance.held_minor,
        balance.debit_minor,
        balance.historical_credit_minor,
    )


def _opening_of(row: WalletAccount) -> tuple[int, int] | None:
    """What the wallet's opening pair posted, as the backfill kept it (None: not kept)."""
    if row.opening_credits_minor is None or row.opening_debits_minor is None:
        return None
    return row.opening_credits_minor, row.opening_debits_minor


def _save_progress(run: ReconciliationRun) -> None:
    """The run's figures so far, for whoever watches it (one UPDATE a page)."""
    ReconciliationRun.objects.filter(pk=run.pk).update(
        wallets_total=run.wallets_total,
        checked=run.checked,
        matched=run.matched,
        mismatched=run.mismatched,
        awaiting_backfill=run.awaiting_backfill,
        outside_share=run.outside_share,
        transfers_checked=run.transfers_checked,
    )


def _mismatch(run: ReconciliationRun, kind: str, row: WalletAccount) -> ReconciliationMismatch:
    return ReconciliationMismatch(
        run=run,
        kind=kind,
        **row.key.as_columns(),
        tb_account_id_hex=row.tb_account_id_hex,
    )
