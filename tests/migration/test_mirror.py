"""Phase 1: dual write without loss. MongoDB first; its outbox reaches TigerBeetle in order,
exactly once, through crashes, outages and concurrent mirrors."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pytest
from django.db import connections

from domain.ids import WalletKey
from flags.phases import Phase
from ledger.backends import LedgerUnavailable, get_ledger_backend
from ledger.backends.base import BATCH_EVENTS_MAX
from ledger.batches import LedgerBatches
from migration.outbox import MirrorState
from registry.models import WalletTransfer
from tests.concurrency import run_concurrently
from tests.conftest import ledger_scope
from tests.migration.conftest import (
    Stores,
    assert_stores_agree,
    enter_phase,
    legacy_wallet,
    new_key,
    phased_over,
    tx,
)


class SwitchableBackend:
    """The real test ledger behind a plug: `down` makes every call fail as an unreachable
    cluster would, after `unanswered_s` (a cluster that does not answer: the client waits out
    its request timeout; 0: one that refuses at once); batch sizes of create_transfers are
    recorded."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.down = False
        self.unanswered_s = 0.0
        self.batch_sizes: list[int] = []
        self.calls: list[tuple[str, float]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        def call(*args: Any) -> Any:
            self.calls.append((name, time.monotonic()))
            if self.down:
                time.sleep(self.unanswered_s)
                raise LedgerUnavailable("connection refused (test: cluster down)")
            if name == "create_transfers":
                self.batch_sizes.append(len(args[0]))
            return method(*args)

        return call


def plug(stores: Stores) -> SwitchableBackend:
    """Route the TigerBeetle store (and the mirror) through a switchable backend."""
    switchable = SwitchableBackend(stores.tigerbeetle.backend)
    stores.tigerbeetle._backend = switchable
    return switchable


def entry_states(stores: Stores, key: WalletKey) -> list[str]:
    log = stores.mongo.database.log()
    query = {"client_id": key.client_id, "wallet_seq": {"$exists": True}}
    return [doc["mirror_state"] for doc in log.find(query).sort("wallet_seq", 1)]


def assert_same_balance(stores: Stores, key: WalletKey) -> None:
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def test_dual_write_mirrors_every_write_right_after_it(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    debit_id = tx()
    stores.phased.add_credit(key, 10_000, tx())
    stores.phased.subtract_credit(key, 2_500, debit_id)
    stores.phased.void_transaction(debit_id, voided_by="support", reason="duplicate")
    assert entry_states(stores, key) == [MirrorState.MIRRORED] * 3
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (10_000, 2_500, 12_500)
    assert WalletTransfer.objects.get(transaction_id=debit_id).state == "voided"
    assert_same_balance(stores, key)


def test_phase_zero_leaves_the_outbox_pending_and_tigerbeetle_untouched(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 500, tx())
    assert entry_states(stores, key) == [MirrorState.PENDING]
    assert WalletTransfer.objects.count() == 0


def test_turning_dual_write_on_mirrors_the_history_kept_in_the_log(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 700, tx())
    stores.phased.subtract_credit(key, 200, tx())
    enter_phase(Phase.DUAL_WRITE)
    report = stores.mirror().drain()
    assert (report.applied, report.parked) == (2, 0)
    assert_same_balance(stores, key)


def test_a_refused_debit_is_not_mirrored(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    with pytest.raises(Exception, match="less available credit"):
        stores.phased.subtract_credit(key, 101, tx())
    assert entry_states(stores, key) == [MirrorState.MIRRORED]
    assert_same_balance(stores, key)


def test_a_repeated_mirror_run_posts_nothing_twice(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 900, tx())
    stores.phased.subtract_credit(key, 400, tx())
    stores.mirror().drain()
    # As if the first run died after TigerBeetle applied the batch but before MongoDB heard.
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.PENDING}})
    report = stores.mirror().drain()
    assert (report.applied, report.already_applied) == (0, 2)
    assert stores.tigerbeetle.get_balance(key).fields_minor() == (500, 400, 900)


def test_each_wallets_entries_are_applied_in_order_within_one_batch(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 300, tx())
    stores.phased.subtract_credit(key, 300, tx())  # only valid after the credit
    stores.phased.add_credit(key, 50, tx())
    backend = plug(stores)
    report = stores.mirror().drain()
    assert (report.applied, report.parked) == (3, 0)
    assert backend.batch_sizes == [3]
    assert_same_balance(stores, key)


def test_many_wallets_go_in_one_create_transfers_batch(stores: Stores) -> None:
    keys = [new_key() for _ in range(25)]
    for key in keys:
        stores.phased.add_credit(key, 100, tx())
    backend = plug(stores)
    stores.mirror().drain()
    assert backend.batch_sizes == [25]


def test_a_run_takes_at_most_the_cluster_batch_limit(stores: Stores) -> None:
    key = new_key()
    for _ in range(5):
        stores.phased.add_credit(key, 1, tx())
    backend = plug(stores)
    stores.mirror().run_once(limit=BATCH_EVENTS_MAX + 100)
    assert max(backend.batch_sizes) <= BATCH_EVENTS_MAX
    stores.mirror().run_once(limit=2)
    assert entry_states(stores, key) == [MirrorState.MIRRORED] * 5


def count_outbox_reads(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many entries each run's read of the pending outbox returned."""
    reads: list[int] = []
    read = stores.outbox.pending_parking_malformed

    def counted(*args: Any, **kwargs: Any) -> Any:
        entries, malformed = read(*args, **kwargs)
        reads.append(len(entries) + malformed)
        return entries, malformed

    monkeypatch.setattr(stores.outbox, "pending_parking_malformed", counted)
    return reads


def test_a_wallets_drain_that_applied_all_it_read_reads_the_outbox_once(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    stores.phased.add_credit(key, 300, tx())
    stores.phased.subtract_credit(key, 100, tx())
    reads = count_outbox_reads(stores, monkeypatch)

    report = stores.mirror().drain(keys=[key])

    assert (report.applied, reads) == (2, [2])
    assert entry_states(stores, key) == [MirrorState.MIRRORED] * 2


def test_a_drain_reads_again_after_a_run_that_set_entries_to_wait_for_the_backfill(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setting a legacy wallet's entries aside may release them again at once (its import
    finished meanwhile): the drain reads once more rather than leave them to the sweep."""
    legacy, new = new_key(), new_key()
    legacy_wallet(stores, legacy, credit_minor=1_000, debit_minor=0)
    stores.phased.add_credit(legacy, 100, tx())
    stores.phased.add_credit(new, 300, tx())
    reads = count_outbox_reads(stores, monkeypatch)

    report = stores.mirror().drain(keys=[legacy, new])

    assert (report.applied, report.waiting_for_backfill) == (1, 1)
    assert reads == [2, 0]
    assert entry_states(stores, legacy) == [MirrorState.AWAITING_BACKFILL]


def test_tigerbeetle_down_writes_still_succeed_and_the_mirror_catches_up(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    backend = plug(stores)
    backend.down = True
    key = new_key()
    results = [stores.phased.add_credit(key, 250, tx()) for _ in range(4)]
    assert results[-1].balance.credit_minor == 1_000
    assert entry_states(stores, key) == [MirrorState.PENDING] * 4
    backend.down = False
    report = stores.mirror().drain()
    assert report.applied == 4
    assert_same_balance(stores, key)


def test_an_entry_failing_run_after_run_is_parked_for_support(
    stores: Stores, settings: Any
) -> None:
    settings.MIRROR_PARK_AFTER_ATTEMPTS = 2
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    backend = plug(stores)
    backend.down = True
    first, second = stores.mirror().run_once(), stores.mirror().run_once()
    assert (first.failed_transiently, second.parked) == (1, 1)
    entry = stores.mongo.database.log().find_one({"client_id": key.client_id})
    assert entry["mirror_state"] == MirrorState.PARKED
    assert "cluster down" in entry["mirror_error"]


def test_an_entry_tigerbeetle_refuses_is_parked_with_its_result_code(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.mirror().drain()
    # The stores diverge: TigerBeetle alone loses the funds, so the next debit cannot apply.
    stores.tigerbeetle.subtract_credit(key, 100, tx())
    stores.phased.subtract_credit(key, 60, tx())
    report = stores.mirror().drain()
    assert report.parked == 1
    parked = stores.mongo.database.log().find_one({"mirror_state": MirrorState.PARKED})
    assert parked["mirror_error"] == "TigerBeetle refused: exceeds_credits"


def test_parked_entries_go_back_to_the_mirror_when_support_requeues_them(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    backend = plug(stores)
    backend.down = True
    stores.outbox.count_failed_attempt([], "")
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.PARKED}})
    backend.down = False
    assert stores.outbox.requeue_parked([key]) == 1
    assert stores.mirror().drain().applied == 1
    assert_same_balance(stores, key)


def _die_after_commit(
    mongo_url: str, *, database: str, client_id: str, transaction_id: str
) -> None:
    """A web process: the MongoDB write commits, then the process dies before queuing."""
    connections.close_all()
    from ledger.stores.mongo_database import MongoDatabase
    from wallet_site.wiring import build_runtime

    def crash(key: WalletKey) -> None:
        os._exit(137)

    phased = build_runtime(
        scope=ledger_scope(),  # the forked test's
        mongo_database=MongoDatabase(mongo_url, name=database),
        enqueue_mirror=crash,
    ).phased
    phased.add_credit(WalletKey(client_id, "USA", "USD"), 4_200, transaction_id)
    os._exit(0)


def test_web_process_killed_between_commit_and_mirror_loses_nothing(
    committed_stores: Stores, mongo_url: str, mongo_database_name: str
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    connections.close_all()  # the child must not share (and then close) our connection
    child = multiprocessing.get_context("fork").Process(
        target=_die_after_commit,
        args=(mongo_url,),
        kwargs={
            "database": mongo_database_name,
            "client_id": key.client_id,
            "transaction_id": tx(),
        },
    )
    child.start()
    child.join(60)
    assert child.exitcode == 137
    assert entry_states(committed_stores, key) == [MirrorState.PENDING]
    from migration.tasks import sweep_outbox

    assert sweep_outbox()["applied"] == 1
    assert sweep_outbox()["applied"] == 0
    assert committed_stores.tigerbeetle.get_balance(key).credit_minor == 4_200


def _die_before_marking(mongo_url: str, *, database: str) -> None:
    """A mirror worker that dies after TigerBeetle applied the batch, before MongoDB heard."""
    connections.close_all()
    from ledger.stores.mongo_database import MongoDatabase
    from migration.mirror import Mirror
    from migration.outbox import MirrorOutbox

    outbox = MirrorOutbox(MongoDatabase(mongo_url, name=database))
    outbox.mark_each = lambda outcomes: os._exit(137)  # type: ignore[method-assign]  # dies here
    Mirror(outbox, LedgerBatches(get_ledger_backend(), scope=ledger_scope())).drain()
    os._exit(0)


def test_mirror_worker_killed_before_marking_applies_every_write_exactly_once(
    committed_stores: Stores, mongo_url: str, mongo_database_name: str
) -> None:
    key = new_key()
    committed_stores.phased.add_credit(key, 1_000, tx())
    committed_stores.phased.subtract_credit(key, 300, tx())
    connections.close_all()  # the child must not share (and then close) our connection
    child = multiprocessing.get_context("fork").Process(
        target=_die_before_marking, args=(mongo_url,), kwargs={"database": mongo_database_name}
    )
    child.start()
    child.join(60)
    assert child.exitcode == 137
    assert entry_states(committed_stores, key) == [MirrorState.PENDING] * 2
    report = committed_stores.mirror().drain()
    assert (report.applied, report.already_applied) == (0, 2)
    assert committed_stores.tigerbeetle.get_balance(key).fields_minor() == (700, 300, 1_000)


def test_concurrent_mirrors_apply_every_entry_once(committed_stores: Stores) -> None:
    keys = [new_key() for _ in range(8)]
    for key in keys:
        for _ in range(5):
            committed_stores.phased.add_credit(key, 10, tx())
    reports = run_concurrently(lambda _: committed_stores.mirror().drain(), range(4), workers=4)
    assert sum(r.applied for r in reports) == 40
    for key in keys:
        assert committed_stores.tigerbeetle.get_balance(key).credit_minor == 50


def test_the_tasks_work_on_the_installed_runtime(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.mongo.add_credit(key, 300, tx())  # logged, never queued

    from migration.tasks import sweep_outbox

    assert sweep_outbox()["applied"] == 1
    assert stores.tigerbeetle.get_balance(key).credit_minor == 300


def test_a_transient_failure_is_tried_three_times_with_backoff(stores: Stores) -> None:
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.mirror().drain()  # the wallet's account exists; only the next transfer will fail
    stores.phased.add_credit(key, 50, tx())
    backend = plug(stores)
    backend.down = True

    report = stores.mirror().run_once()

    tries = [at for name, at in backend.calls if name == "create_transfers"]
    assert report.failed_transiently == 1
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 0.09 and tries[2] - tries[1] >= 0.19  # 100 ms x 2^n


def test_the_sweeper_and_reconciliation_are_on_the_beat_schedule(settings: Any) -> None:
    from wallet_site.celery import app

    schedule = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert schedule["ledger.sweep_outbox"] == settings.MIRROR_SWEEP_INTERVAL_S
    assert schedule["ledger.reconcile"] == settings.RECONCILE_INTERVAL_S
    app.loader.import_default_modules()
    assert {"ledger.sweep_outbox", "ledger.reconcile"} <= set(app.tasks)


def test_the_mirror_carries_who_made_each_write_into_the_registry(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    credit_id, debit_id = tx(), tx()

    stores.phased.add_credit(key, 10_000, credit_id, made_by="payments-gateway")
    stores.phased.subtract_credit(key, 2_500, debit_id, made_by="checkout")

    made_by = dict(
        WalletTransfer.objects.filter(transaction_id__in=[credit_id, debit_id]).values_list(
            "transaction_id", "made_by"
        )
    )
    assert made_by == {credit_id: "payments-gateway", debit_id: "checkout"}


@pytest.mark.parametrize(
    "credits_before_the_hold", [0, 1], ids=["before_the_runs_entries", "between_them"]
)
def test_a_capture_waits_while_its_hold_waits_outside_the_run(
    stores: Stores, credits_before_the_hold: int
) -> None:
    """Two runs at once can see a wallet's entries half-way through a change of state: the
    hold's entry set aside (awaiting its import) while its capture is pending. Sent alone,
    the capture meets no pending transfer and TigerBeetle burns its id for good (seen in
    the million-wallet moonshot: the capture parked, MongoDB's debit above TigerBeetle's;
    then, with that fixed, the holds between the run's credits and their capture)."""
    enter_phase(Phase.DUAL_WRITE)
    key, hold_id = new_key(), f"hold-{tx()}"
    stores.phased.add_credit(key, 1_000, tx())  # mirrored: the wallet's account is there
    lagging = phased_over(stores, enqueue_mirror=lambda k: None)
    for _ in range(credits_before_the_hold):
        lagging.add_credit(key, 50, tx())  # in the run, before the hold it leaves out
    lagging.place_hold(key, 400, hold_id, timeout_s=3_600)
    lagging.capture_hold(hold_id, amount_minor=300, made_by="payments")
    log = stores.mongo.database.log()
    placed = log.find_one({"hold_id": hold_id, "kind": "hold"})
    log.update_one({"_id": placed["_id"]}, {"$set": {"mirror_state": "awaiting_backfill"}})

    held_back = stores.mirror().drain()

    in_the_run = 1 + credits_before_the_hold
    assert (held_back.applied, held_back.parked, held_back.behind_earlier) == (0, 0, in_the_run)
    capture = log.find_one({"hold_id": hold_id, "kind": "capture"})
    assert capture["mirror_state"] == MirrorState.PENDING
    log.update_one({"_id": placed["_id"]}, {"$set": {"mirror_state": MirrorState.PENDING}})

    caught_up = stores.mirror().drain()

    assert (caught_up.applied, caught_up.parked) == (in_the_run + 1, 0)
    assert_stores_agree(stores, [key])
    assert stores.tigerbeetle.get_balance(key).debit_minor == 300
