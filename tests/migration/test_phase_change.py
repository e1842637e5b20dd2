"""Moving between phases: TigerBeetle-only is entered drained and backfilled, left without
losing a write; writes wait (503 writes_paused) while the primary store moves."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from domain.batches import BatchItem, BatchItemKind
from domain.ids import WalletKey
from flags.audit import set_writes_paused
from flags.models import FlagChange, Milestone
from flags.phases import WRITES_PAUSED, InvalidPhaseChange, Phase, current_state
from flags.write_lock import write_admitted
from ledger.stores.mongo_documents import decimal128
from migration.backfill import Backfill
from migration.copy_back import copy_back_due, copy_back_tigerbeetle_writes
from migration.outbox import MirrorState
from migration.phase_change import change_phase
from migration.tasks import sweep_outbox
from tests.migration.conftest import (
    Stores,
    assert_stores_agree,
    enter_phase,
    new_key,
    phased_over,
    tx,
)
from tests.migration.test_mirror import plug

# What a step does, not its gates (tests/migration/test_phase_gates.py).
pytestmark = pytest.mark.usefixtures("criteria_not_awaited")


def move(stores: Stores, phase: Phase, **kwargs: Any) -> Any:
    return change_phase(phase, "tester", stores.mongo, stores.batches, **kwargs)


def backfill_done() -> None:
    from django.utils import timezone

    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())


def test_tigerbeetle_only_before_the_backfill_is_refused(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    with pytest.raises(InvalidPhaseChange, match="backfill"):
        move(stores, Phase.TIGERBEETLE_ONLY)
    assert current_state().phase == Phase.READ_CUTOVER


def test_entering_tigerbeetle_only_drains_the_mirror_first(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    lagging = phased_over(stores, enqueue_mirror=lambda k: None)
    key = new_key()
    lagging.add_credit(key, 600, tx())

    report = move(stores, Phase.TIGERBEETLE_ONLY)

    assert report.mirrored == 1
    assert stores.tigerbeetle.get_balance(key).credit_minor == 600
    assert current_state().phase == Phase.TIGERBEETLE_ONLY


def test_tigerbeetle_only_with_parked_entries_is_refused_and_writes_resume(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.PARKED}})

    with pytest.raises(InvalidPhaseChange, match="1 outbox entries are parked"):
        move(stores, Phase.TIGERBEETLE_ONLY)

    assert current_state().phase == Phase.READ_CUTOVER
    stores.phased.add_credit(key, 1, tx())  # not paused


def test_tigerbeetle_only_with_parked_entries_is_refused_before_writes_pause(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    stores.phased.add_credit(new_key(), 100, tx())
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.PARKED}})

    with pytest.raises(InvalidPhaseChange, match="1 outbox entries are parked"):
        move(stores, Phase.TIGERBEETLE_ONLY)

    assert not FlagChange.objects.filter(flag_name=WRITES_PAUSED).exists()


def test_tigerbeetle_only_is_refused_when_the_drain_leaves_entries_and_writes_resume(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.mongo.add_credit(key, 100, tx())  # pending: the plan lets the step start
    plug(stores).down = True  # the drain cannot apply it

    with pytest.raises(InvalidPhaseChange, match=r"the mirror is not drained.*\(1 pending\)"):
        move(stores, Phase.TIGERBEETLE_ONLY)

    state = current_state()
    assert (state.phase, state.writes_paused) == (Phase.READ_CUTOVER, False)
    assert FlagChange.objects.filter(flag_name=WRITES_PAUSED).count() == 2  # paused, resumed
    stores.phased.add_credit(key, 1, tx())  # not paused


def test_in_tigerbeetle_only_writes_skip_mongodb(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    move(stores, Phase.TIGERBEETLE_ONLY)

    stores.phased.add_credit(key, 50, tx())

    assert stores.tigerbeetle.get_balance(key).credit_minor == 150
    assert stores.mongo.get_balance(key).credit_minor == 100
    assert stores.phased.get_balance(key).credit_minor == 150


def test_writes_wait_with_503_while_a_phase_change_moves_them(
    stores: Stores, api: APIClient
) -> None:
    key = new_key()
    url = f"/api/clients/{key.client_id}/wallets/USA/USD"
    set_writes_paused(True, actor="tester")

    response = api.post(f"{url}/credits", {"transaction_id": tx(), "amount": "1"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "writes_paused"
    set_writes_paused(False, actor="tester")
    response = api.post(f"{url}/credits", {"transaction_id": tx(), "amount": "1"}, format="json")
    assert response.status_code == 201


def test_stepping_back_from_tigerbeetle_only_keeps_every_phase_4_write(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    old, new = new_key(), new_key()
    old_credit = tx()
    stores.phased.add_credit(old, 1_000, old_credit)
    move(stores, Phase.TIGERBEETLE_ONLY)
    phase4_debit = tx()
    stores.phased.subtract_credit(old, 300, phase4_debit)
    stores.phased.void_transaction(phase4_debit, voided_by="support", reason="wrong amount")
    stores.phased.subtract_credit(old, 950, tx())
    stores.phased.add_credit(new, 75, tx())  # a wallet born in phase 4

    report = move(stores, Phase.READ_CUTOVER)

    assert report.copied_back == 4
    assert_stores_agree(stores, [old, new])
    assert stores.mongo.get_transaction(phase4_debit).state == "voided"
    copied = stores.mongo.database.log().count_documents(
        {"mirror_state": MirrorState.FROM_TIGERBEETLE}
    )
    assert copied == 4


def test_stepping_back_copies_who_made_each_phase_4_write_into_mongodb(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    move(stores, Phase.TIGERBEETLE_ONLY)
    credit_id, debit_id = tx(), tx()
    stores.phased.add_credit(key, 1_000, credit_id, made_by="payments-gateway")
    stores.phased.subtract_credit(key, 300, debit_id, made_by="checkout")

    move(stores, Phase.READ_CUTOVER)

    assert stores.mongo.get_transaction(credit_id).made_by == "payments-gateway"
    assert stores.mongo.get_transaction(debit_id).made_by == "checkout"


def test_after_stepping_back_new_writes_are_mirrored_once(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    move(stores, Phase.TIGERBEETLE_ONLY)
    stores.phased.add_credit(key, 100, tx())
    move(stores, Phase.READ_CUTOVER)

    stores.phased.add_credit(key, 100, tx())
    stores.mirror().drain()

    assert stores.tigerbeetle.get_balance(key).credit_minor == 300
    assert_stores_agree(stores, [key])


def test_a_repeated_step_back_copies_nothing_twice(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    move(stores, Phase.TIGERBEETLE_ONLY)
    stores.phased.add_credit(key, 100, tx())
    move(stores, Phase.READ_CUTOVER)
    move(stores, Phase.TIGERBEETLE_ONLY)
    report = move(stores, Phase.READ_CUTOVER)
    assert report.copied_back == 0
    assert stores.mongo.get_balance(key).credit_minor == 100


def test_the_command_changes_the_phase_and_audits_the_actor(stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ)
    out = StringIO()
    call_command("migration_phase", "3", "--rollout", "1", "--actor", "alice", stdout=out)
    assert "phase 2 -> 3" in out.getvalue()
    state = current_state()
    assert (state.phase, state.read_rollout_percent) == (Phase.READ_CUTOVER, 1)
    assert FlagChange.objects.filter(actor="alice (command)").exists()


def test_the_command_explains_a_refusal(stores: Stores) -> None:
    with pytest.raises(CommandError, match=r"refused: .*backfill"):
        call_command("migration_phase", "4", stdout=StringIO())


def test_the_command_refuses_phase_2_without_a_shadow_share_rather_than_guessing_one(
    stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    with pytest.raises(CommandError, match=r"refused: phase 2 compares a share of reads"):
        call_command("migration_phase", "2", stdout=StringIO())
    assert current_state().phase == Phase.DUAL_WRITE


def test_the_command_without_a_phase_shows_the_current_one(stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=5)
    out = StringIO()
    call_command("migration_phase", stdout=out)
    assert "phase 2 shadow_read" in out.getvalue() and "shadow=5" in out.getvalue()


def test_a_transaction_older_than_the_backfill_snapshot_can_be_voided_in_phase_4(
    stores: Stores,
) -> None:
    from migration.backfill import Backfill
    from tests.migration.conftest import legacy_wallet

    key = new_key()
    legacy_wallet(stores, key, credit_minor=1_000, debit_minor=0)
    old_credit = tx()
    stores.phased.add_credit(key, 500, old_credit)  # phase 0: covered by the snapshot
    enter_phase(Phase.READ_CUTOVER)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    move(stores, Phase.TIGERBEETLE_ONLY)

    result = stores.phased.void_transaction(
        old_credit, voided_by="support", reason="duplicate top-up"
    )

    assert result.balance.fields_minor() == (1_000, 500, 1_500)
    assert stores.tigerbeetle.get_balance(key).credit_minor == 1_000


def wallet_in_phase_4(stores: Stores) -> WalletKey:
    """A wallet credited 100 in phase 3, then the migration in phase 4."""
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    move(stores, Phase.TIGERBEETLE_ONLY)
    return key


def test_a_mongodb_write_landing_just_after_entering_phase_4_is_still_mirrored(
    stores: Stores,
) -> None:
    key = wallet_in_phase_4(stores)
    stores.mongo.add_credit(key, 40, tx())  # written past the write lock, on the store itself

    sweep_outbox()

    assert stores.tigerbeetle.get_balance(key).credit_minor == 140


def test_a_tigerbeetle_write_landing_just_after_leaving_phase_4_is_copied_back(
    stores: Stores,
) -> None:
    key = wallet_in_phase_4(stores)
    move(stores, Phase.READ_CUTOVER)
    stores.tigerbeetle.add_credit(key, 25, tx())  # written past the write lock, on the store

    assert sweep_outbox()["copied_back"] == 1

    assert stores.mongo.get_balance(key).credit_minor == 125
    assert_stores_agree(stores, [key])


def test_tigerbeetle_only_is_refused_while_a_mongodb_wallet_is_missing_from_tigerbeetle(
    stores: Stores,
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())  # mirrored as usual
    stray = new_key()
    # A wallet written after the backfill whose write never reached the outbox (no log entry).
    stores.mongo.database.wallets().insert_one(
        {
            "client_id": stray.client_id,
            "country": stray.country,
            "currency": stray.currency,
            "issuer_type_identifier": "",
            "credit": decimal128(1_100, stray.currency),
            "debit": decimal128(0, stray.currency),
            "historical_credit": decimal128(1_100, stray.currency),
            "wallet_seq": 1,
            "log_complete": True,
            "created_at": datetime.now(UTC),
        }
    )
    flags_before = current_state()

    with pytest.raises(InvalidPhaseChange, match=f"{stray.client_id} USA USD \\(missing\\)"):
        move(stores, Phase.TIGERBEETLE_ONLY)

    assert current_state() == flags_before  # unchanged, and writes resumed
    stores.phased.add_credit(key, 1, tx())


def test_tigerbeetle_only_is_refused_while_a_balance_differs(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.mongo.database.wallets().update_one(
        {"client_id": key.client_id}, {"$set": {"credit": decimal128(90, key.currency)}}
    )

    with pytest.raises(InvalidPhaseChange, match="balance differs"):
        move(stores, Phase.TIGERBEETLE_ONLY)

    assert current_state().phase == Phase.READ_CUTOVER


def test_a_phase_change_is_refused_when_a_write_in_flight_does_not_finish_in_time(
    stores: Stores, settings: Any
) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    settings.PHASE_CHANGE_WRITES_WAIT_S = 0.1
    holding, release = threading.Event(), threading.Event()

    def slow_write() -> None:
        with write_admitted():
            holding.set()
            release.wait(10)
        connection.close()

    writer = threading.Thread(target=slow_write)
    writer.start()
    try:
        assert holding.wait(5)
        with pytest.raises(InvalidPhaseChange, match="writes still running"):
            move(stores, Phase.TIGERBEETLE_ONLY)
    finally:
        release.set()
        writer.join(10)

    state = current_state()
    assert (state.phase, state.writes_paused) == (Phase.READ_CUTOVER, False)


def test_a_copy_back_longer_than_one_page_keeps_tigerbeetles_order(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    move(stores, Phase.TIGERBEETLE_ONLY)
    ids = [tx() for _ in range(6)]
    # Each step needs the one before it in MongoDB: out of order, a debit or a void of a
    # credit would be refused for funds and the copy-back would fail.
    stores.phased.add_credit(key, 100, ids[0])
    stores.phased.subtract_credit(key, 100, ids[1])
    stores.phased.void_transaction(ids[1], voided_by="support", reason="refund")
    stores.phased.subtract_credit(key, 100, ids[2])
    stores.phased.add_credit(key, 40, ids[3])
    stores.phased.void_transaction(ids[3], voided_by="support", reason="duplicate")
    stores.phased.add_credit(key, 60, ids[4])
    stores.phased.subtract_credit(key, 60, ids[5])
    tigerbeetle_order = [ids[0], ids[1], f"void {ids[1]}", ids[2], ids[3], f"void {ids[3]}"]
    tigerbeetle_order += [ids[4], ids[5]]

    copied = copy_back_tigerbeetle_writes(stores.mongo, stores.batches, page_rows=2)

    assert copied == 8
    log = stores.mongo.database.log().find(
        {"mirror_state": MirrorState.FROM_TIGERBEETLE}, sort=[("wallet_seq", 1)]
    )
    assert [
        f"void {entry['voided_transaction_id']}" if entry["kind"] == "void" else entry["_id"]
        for entry in log
    ] == tigerbeetle_order
    assert_stores_agree(stores, [key])


def test_a_hold_placed_on_tigerbeetle_alone_makes_the_copy_back_due_until_it_is_copied(
    stores: Stores,
) -> None:
    """The sweeper starts a copy back on `copy_back_due`: a placement TigerBeetle took alone
    (one landing after a step back's own copy, say) is due as a capture or a write is."""
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    move(stores, Phase.TIGERBEETLE_ONLY)
    stores.phased.add_credit(key, 100, tx())
    copy_back_tigerbeetle_writes(stores.mongo, stores.batches, page_rows=10)
    assert not copy_back_due()

    stores.phased.place_hold(key, 40, f"hold-{tx()}", timeout_s=3_600)

    assert copy_back_due()
    copy_back_tigerbeetle_writes(stores.mongo, stores.batches, page_rows=10)
    assert not copy_back_due()
    assert stores.mongo.get_balance(key).held_minor == 40


def test_a_hold_a_phase_4_batch_placed_is_copied_back(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    move(stores, Phase.TIGERBEETLE_ONLY)
    stores.phased.add_credit(key, 100, tx())
    hold = f"hold-{tx()}"
    stores.phased.post_batch(
        [
            BatchItem(
                kind=BatchItemKind.HOLD,
                key=key,
                amount_minor=40,
                transaction_id=hold,
                timeout_s=3_600,
            )
        ],
        atomic=False,
    )

    assert copy_back_due()
    copy_back_tigerbeetle_writes(stores.mongo, stores.batches, page_rows=10)
    assert stores.mongo.get_balance(key).held_minor == 40
    assert_stores_agree(stores, [key])


def test_a_step_that_moves_where_money_is_written_reports_how_long_writes_were_paused(
    stores: Stores,
) -> None:
    enter_phase(Phase.SHADOW_READ)
    backfill_done()

    unpaused = move(stores, Phase.READ_CUTOVER, rollout_percent=1)
    enter_phase(Phase.READ_CUTOVER)
    into_phase_4 = move(stores, Phase.TIGERBEETLE_ONLY)
    back = move(stores, Phase.READ_CUTOVER)

    assert unpaused.paused_s == 0
    assert into_phase_4.paused_s > 0 and back.paused_s > 0


def test_a_pause_is_split_into_what_it_waited_for(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    key = new_key()
    stores.phased.add_credit(key, 100, tx())

    into_phase_4 = move(stores, Phase.TIGERBEETLE_ONLY)
    back = move(stores, Phase.READ_CUTOVER)

    assert list(into_phase_4.pause_parts_s) == [
        "writes in flight",
        "mirror drained",
        "wallets compared",
        "flags",
    ]
    assert list(back.pause_parts_s) == ["writes in flight", "copied back", "flags"]
    for report in (into_phase_4, back):
        assert 0 < sum(report.pause_parts_s.values()) <= report.paused_s
    assert into_phase_4.compared_in_pause >= 1  # the wallet written since no run compared it


def test_the_command_says_where_the_pause_went(stores: Stores, settings: Any) -> None:
    settings.FOUR_EYES_PHASE_CHANGES = False
    enter_phase(Phase.READ_CUTOVER)
    backfill_done()
    stores.phased.add_credit(new_key(), 100, tx())
    out = StringIO()

    call_command("migration_phase", "4", "--actor", "alice", stdout=out)

    assert re.search(
        r"writes paused [\d.]+ s \(writes in flight [\d.]+ s, mirror drained [\d.]+ s, "
        r"\d+ wallets compared [\d.]+ s, flags [\d.]+ s\)",
        out.getvalue(),
    ), out.getvalue()
