"""A share of clients dual-written: only their wallets reach TigerBeetle (mirror, backfill),
only they are reconciled and shadow-compared, and a client the share takes in is mirrored
whole and in order, whatever ran while the share changed."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from backoffice.selectors import wallet_overview
from flags.audit import apply_state
from flags.models import Milestone
from flags.phases import (
    InvalidPhaseChange,
    Phase,
    current_state,
    share_bucket_limit,
    state_for_phase,
)
from migration.backfill import Backfill
from migration.models import ShadowComparison
from migration.outbox import MirrorState
from migration.phase_change import change_phase
from migration.reconciliation import Reconciliation
from migration.shadow import compare_shadow_read
from registry import accounts as account_registry
from tests.migration.conftest import Stores, legacy_wallet, tx
from tests.migration.share_keys import key_inside, key_outside
from tests.migration.test_mirror import entry_states


def at_share(percent: int, phase: Phase = Phase.DUAL_WRITE) -> None:
    apply_state(
        state_for_phase(phase, shadow_percent=Decimal(100), dual_write_percent=Decimal(percent)),
        actor="test",
    )


def release(stores: Stores, percent: int) -> None:
    stores.outbox.release_outside_share(bucket_limit=share_bucket_limit(Decimal(percent)))


def test_only_clients_inside_the_share_are_mirrored(stores: Stores) -> None:
    at_share(50)
    inside, outside = key_inside(50), key_outside(50)
    for key in (inside, outside):
        stores.phased.add_credit(key, 1_000, tx())
    stores.mirror().drain()
    assert entry_states(stores, inside) == [MirrorState.MIRRORED]
    assert entry_states(stores, outside) == [MirrorState.OUTSIDE_SHARE]
    assert stores.tigerbeetle.get_balance(inside) == stores.mongo.get_balance(inside)
    assert account_registry.find_account(outside) is None


def test_a_client_the_share_takes_in_is_mirrored_whole(stores: Stores) -> None:
    at_share(50)
    key = key_outside(50)
    debit_id = tx()
    stores.phased.add_credit(key, 5_000, tx())
    stores.phased.subtract_credit(key, 2_000, debit_id)
    stores.phased.void_transaction(debit_id, voided_by="support", reason="twice")
    stores.mirror().drain()
    at_share(100)
    release(stores, 100)
    stores.mirror().drain()
    assert entry_states(stores, key) == [MirrorState.MIRRORED] * 3
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


def change_share(stores: Stores, percent: int) -> None:
    change_phase(
        Phase.DUAL_WRITE,
        actor="test",
        mongo=stores.mongo,
        tigerbeetle=stores.batches,
        dual_write_percent=Decimal(percent),
    )


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_wallet_entering_the_share_is_applied_in_order(stores: Stores) -> None:
    at_share(50)
    key = key_outside(50)
    stores.phased.add_credit(key, 1_000, tx())
    stores.mirror().drain()
    assert entry_states(stores, key) == [MirrorState.OUTSIDE_SHARE]
    change_share(stores, 100)
    stores.phased.subtract_credit(key, 800, tx())  # its mirror runs at once (eager tasks)
    stores.mirror().drain()
    # The credit was released before the share took the client in: the debit it funds was
    # never sent ahead of it (TigerBeetle would have refused it for want of credits).
    assert entry_states(stores, key) == [MirrorState.MIRRORED] * 2
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_share_change_waits_for_the_mirror_run_in_flight(
    committed_stores: Stores, settings: Any, monkeypatch: Any
) -> None:
    settings.PHASE_CHANGE_WRITES_WAIT_S = 0.2
    stores = committed_stores
    at_share(50)
    key = key_outside(50)
    stores.mongo.add_credit(key, 700, tx())
    refusals: list[str] = []

    def another_process_raises() -> None:
        try:
            change_share(stores, 100)
        except InvalidPhaseChange as exc:
            refusals.append(str(exc))
        finally:
            connections.close_all()

    set_aside = stores.outbox.set_outside_share

    def set_aside_while_a_raise_is_asked(entries: Any) -> None:
        asking = threading.Thread(target=another_process_raises)
        asking.start()
        asking.join()
        set_aside(entries)

    monkeypatch.setattr(stores.outbox, "set_outside_share", set_aside_while_a_raise_is_asked)
    stores.mirror().drain()
    assert refusals and "mirror runs still running" in refusals[0]
    assert current_state().dual_write_percent == 50
    assert entry_states(stores, key) == [MirrorState.OUTSIDE_SHARE]


def test_read_your_writes_counts_entries_outside_the_share_as_unmirrored(stores: Stores) -> None:
    at_share(50)
    key = key_outside(50)
    stores.phased.add_credit(key, 1_000, tx())
    stores.mirror().drain()
    assert stores.outbox.has_unmirrored(key)


def test_the_backfill_imports_only_wallets_inside_the_share(stores: Stores) -> None:
    at_share(50, Phase.LEGACY)
    inside, outside = key_inside(50), key_outside(50)
    legacy_wallet(stores, inside, credit_minor=300, debit_minor=100)
    legacy_wallet(stores, outside, credit_minor=900, debit_minor=0)
    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    assert (report.imported, report.outside_share) == (1, 1)
    assert account_registry.find_account(outside) is None
    assert not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists()
    at_share(100, Phase.LEGACY)
    report = Backfill(stores.scan, stores.outbox, stores.batches).run(progress=False)
    assert (report.imported, report.already_imported, report.outside_share) == (1, 1, 0)
    assert stores.tigerbeetle.get_balance(outside) == stores.mongo.get_balance(outside)
    assert Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists()


def test_reconciliation_compares_only_wallets_inside_the_share(stores: Stores) -> None:
    at_share(50)
    inside, outside = key_inside(50), key_outside(50)
    for key in (inside, outside):
        stores.phased.add_credit(key, 1_000, tx())
    stores.mirror().drain()
    run = Reconciliation(stores.scan, stores.outbox, stores.batches).run()
    assert (run.checked, run.matched, run.mismatched, run.outside_share) == (1, 1, 0, 1)


def test_a_shadow_read_of_a_client_outside_the_share_is_not_compared(stores: Stores) -> None:
    at_share(50, Phase.SHADOW_READ)
    key = key_outside(50)
    stores.phased.add_credit(key, 1_000, tx())
    balance, seq = stores.mongo.get_balance_and_seq(key)
    comparison = compare_shadow_read(
        balance, seq, stores.outbox, stores.tigerbeetle, stores.batches
    )
    assert comparison.outcome == ShadowComparison.Outcome.SKIPPED
    assert account_registry.find_account(key) is None


def test_supports_wallet_page_says_a_client_outside_the_share_is_expected_to_differ(
    stores: Stores,
) -> None:
    at_share(50)
    key = key_outside(50)
    stores.phased.add_credit(key, 1_000, tx())
    stores.mirror().drain()
    overview = wallet_overview(key, stores.mongo, stores.tigerbeetle, state=current_state())
    assert overview.difference.level == "info"
    assert "outside the dual-write share (50.0% of clients)" in overview.difference.message
    assert "outside the dual-write share" in overview.roles.explanation


@pytest.mark.usefixtures("criteria_not_awaited")
def test_a_client_the_share_leaves_keeps_what_tigerbeetle_has_and_returns_in_order(
    stores: Stores, settings: Any
) -> None:
    settings.DUAL_WRITE_SHARE_STEPS = (Decimal(5), Decimal(50), Decimal(100))
    at_share(50)
    key = key_inside(50, above=5)
    stores.phased.add_credit(key, 1_000, tx())
    change_share(stores, 5)  # lowered: a step back, never gated
    stores.phased.subtract_credit(key, 900, tx())
    stores.phased.add_credit(key, 50, tx())
    stores.mirror().drain()
    assert entry_states(stores, key) == [MirrorState.MIRRORED] + [MirrorState.OUTSIDE_SHARE] * 2
    assert stores.tigerbeetle.get_balance(key).credit_minor == 1_000
    change_share(stores, 50)
    stores.mirror().drain()
    assert entry_states(stores, key) == [MirrorState.MIRRORED] * 3
    assert stores.tigerbeetle.get_balance(key) == stores.mongo.get_balance(key)
