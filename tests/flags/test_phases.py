"""The phase resolver: what each phase means, stable rollout buckets, refused combinations,
and the audit of every flip."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from waffle.models import Sample, Switch

from flags.audit import apply_state
from flags.models import FlagChange
from flags.phases import (
    DUAL_WRITE,
    READ_ROLLOUT,
    TIGERBEETLE_ONLY,
    InvalidPhaseChange,
    Phase,
    client_bucket,
    current_state,
    state_for_phase,
)

pytestmark = pytest.mark.django_db


def test_no_flags_is_phase_zero_legacy_mongo_only() -> None:
    state = current_state()
    assert state.phase == Phase.LEGACY
    assert state.writes_to_mongo and not state.mirrors_to_tigerbeetle
    assert not state.reads_from_tigerbeetle("anyone")


@pytest.mark.parametrize("phase", list(Phase))
def test_applying_a_phase_reads_back_as_that_phase(phase: Phase) -> None:
    apply_state(state_for_phase(phase, rollout_percent=Decimal(50)), actor="tester")
    assert current_state().phase == phase


def test_dual_write_keeps_mongo_primary_and_mirrors() -> None:
    state = state_for_phase(Phase.DUAL_WRITE)
    assert state.writes_to_mongo and state.mirrors_to_tigerbeetle


def test_tigerbeetle_only_stops_mongo_writes_and_the_mirror() -> None:
    state = state_for_phase(Phase.TIGERBEETLE_ONLY)
    assert not state.writes_to_mongo and not state.mirrors_to_tigerbeetle
    assert state.reads_from_tigerbeetle("anyone")


def test_shadow_sample_only_compares_draws_below_its_share() -> None:
    state = state_for_phase(Phase.SHADOW_READ, shadow_percent=Decimal(25))
    assert state.shadows(Decimal("24.99"), client_id="anyone")
    assert not state.shadows(Decimal(25), client_id="anyone")


def test_client_bucket_is_stable_and_spread() -> None:
    buckets = [client_bucket(f"client-{n}") for n in range(2000)]
    assert buckets == [client_bucket(f"client-{n}") for n in range(2000)]
    assert all(0 <= bucket < 10_000 for bucket in buckets)
    assert 800 < sum(bucket < 5000 for bucket in buckets) < 1200


def test_read_rollout_share_moves_that_share_of_clients_to_tigerbeetle() -> None:
    clients = [f"client-{n}" for n in range(4000)]
    state = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(10))
    on_tigerbeetle = sum(state.reads_from_tigerbeetle(client) for client in clients)
    assert 300 < on_tigerbeetle < 500


def test_a_client_on_tigerbeetle_stays_there_as_the_rollout_grows() -> None:
    clients = [f"client-{n}" for n in range(1000)]
    at_10 = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(10))
    at_60 = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(60))
    assert all(at_60.reads_from_tigerbeetle(c) for c in clients if at_10.reads_from_tigerbeetle(c))


def test_zero_and_full_rollout_move_nobody_and_everybody() -> None:
    clients = [f"client-{n}" for n in range(500)]
    none = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(0))
    every = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(100))
    assert not any(none.reads_from_tigerbeetle(c) for c in clients)
    assert all(every.reads_from_tigerbeetle(c) for c in clients)


def test_read_cutover_without_dual_write_is_refused_with_the_reason() -> None:
    state = replace(state_for_phase(Phase.READ_CUTOVER), dual_write=False)
    with pytest.raises(InvalidPhaseChange, match="read cutover needs dual write"):
        apply_state(state, actor="tester")
    assert current_state().phase == Phase.LEGACY


def test_a_migration_flag_flipped_outside_a_phase_change_is_refused() -> None:
    apply_state(state_for_phase(Phase.READ_CUTOVER), actor="tester")
    switch = Switch.objects.get(name=DUAL_WRITE)
    switch.active = False
    with pytest.raises(InvalidPhaseChange, match="only through a phase change"):
        switch.save()
    assert current_state().phase == Phase.READ_CUTOVER


def test_a_migration_flag_created_outside_a_phase_change_is_refused() -> None:
    with pytest.raises(InvalidPhaseChange, match="migration_phase"):
        Switch.objects.update_or_create(name=TIGERBEETLE_ONLY, defaults={"active": True})
    assert not current_state().tigerbeetle_only


def test_a_share_outside_0_to_100_is_refused() -> None:
    state = state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal("100.1"))
    with pytest.raises(InvalidPhaseChange, match="between 0 and 100"):
        apply_state(state, actor="tester")


def test_each_flip_is_audited_with_actor_and_both_values() -> None:
    apply_state(state_for_phase(Phase.DUAL_WRITE), actor="alice", note="start phase 1")
    change = FlagChange.objects.get(flag_name=DUAL_WRITE)
    assert (change.old_value, change.new_value, change.actor, change.note) == (
        "off",
        "on",
        "alice",
        "start phase 1",
    )


def test_a_refused_flip_leaves_no_audit_row() -> None:
    apply_state(state_for_phase(Phase.READ_CUTOVER), actor="alice")
    before = FlagChange.objects.count()
    sample = Sample.objects.get(name=READ_ROLLOUT)
    sample.percent = Decimal(30)
    with pytest.raises(InvalidPhaseChange):
        sample.save()
    assert FlagChange.objects.count() == before


def test_unchanged_flags_leave_no_audit_rows() -> None:
    apply_state(state_for_phase(Phase.DUAL_WRITE), actor="alice")
    before = FlagChange.objects.count()
    apply_state(state_for_phase(Phase.DUAL_WRITE), actor="alice")
    assert FlagChange.objects.count() == before
