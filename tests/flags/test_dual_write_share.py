"""The dual-write share: which clients' wallets are dual-written, decided per client by the
stable bucket the read rollout uses; no row means every client (as before the share)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from waffle.models import Sample

from flags.audit import apply_state
from flags.models import FlagChange
from flags.phases import (
    DUAL_WRITE_SHARE,
    Phase,
    client_bucket,
    current_state,
    in_share,
    share_bucket_limit,
    state_for_phase,
)

CLIENTS = [f"client-{n}" for n in range(2000)]


def _inside(percent: Decimal) -> set[str]:
    state = state_for_phase(Phase.DUAL_WRITE, dual_write_percent=percent)
    return {client for client in CLIENTS if state.mirrors_wallets_of(client)}


@pytest.mark.django_db
def test_without_a_share_row_every_client_is_dual_written() -> None:
    apply_state(state_for_phase(Phase.DUAL_WRITE), actor="tester")
    state = current_state()
    assert state.dual_write_percent == 100
    assert all(state.mirrors_wallets_of(client) for client in CLIENTS)
    assert not Sample.objects.filter(name=DUAL_WRITE_SHARE).exists()


@pytest.mark.django_db
def test_the_share_reads_back_and_its_change_is_audited() -> None:
    apply_state(state_for_phase(Phase.DUAL_WRITE, dual_write_percent=Decimal(5)), actor="al")
    assert current_state().dual_write_percent == 5
    flip = FlagChange.objects.get(flag_name=DUAL_WRITE_SHARE)
    assert (flip.old_value, flip.new_value, flip.actor) == ("100.0", "5", "al")


def test_a_client_is_inside_exactly_when_its_bucket_is_below_the_share() -> None:
    for client in CLIENTS[:200]:
        assert in_share(client, Decimal("12.5")) == (client_bucket(client) < 1250)
    assert share_bucket_limit(Decimal("0.1")) == 10


def test_raising_the_share_only_adds_clients() -> None:
    at_1, at_5, at_25 = _inside(Decimal(1)), _inside(Decimal(5)), _inside(Decimal(25))
    assert at_1 < at_5 < at_25
    assert 0 < len(at_1) < len(at_5) < len(at_25) < len(CLIENTS)


def test_the_choice_is_per_client_whatever_the_wallet_or_operation() -> None:
    state = state_for_phase(Phase.DUAL_WRITE, dual_write_percent=Decimal(50))
    # The decision takes the client id alone: asked again, for any wallet of it, the same.
    assert [state.mirrors_wallets_of(c) for c in CLIENTS] == [
        state.mirrors_wallets_of(c) for c in CLIENTS
    ]


def test_phase_zero_mirrors_no_client_whatever_the_share() -> None:
    state = state_for_phase(Phase.LEGACY, dual_write_percent=Decimal(100))
    assert not any(state.mirrors_wallets_of(client) for client in CLIENTS)


def test_read_cutover_serves_from_tigerbeetle_only_clients_inside_both_shares() -> None:
    state = state_for_phase(
        Phase.READ_CUTOVER, rollout_percent=Decimal(100), dual_write_percent=Decimal(25)
    )
    assert {c for c in CLIENTS if state.reads_from_tigerbeetle(c)} == _inside(Decimal(25))


def test_shadow_reads_compare_only_clients_inside_the_share() -> None:
    state = state_for_phase(
        Phase.SHADOW_READ, shadow_percent=Decimal(100), dual_write_percent=Decimal(25)
    )
    compared = {c for c in CLIENTS if state.shadows(Decimal(0), client_id=c)}
    assert compared == _inside(Decimal(25))


def test_tigerbeetle_only_is_refused_with_a_partial_share() -> None:
    state = state_for_phase(Phase.TIGERBEETLE_ONLY, dual_write_percent=Decimal(50))
    assert any("dual-write share to 100%" in problem for problem in state.problems())


def test_a_share_outside_0_to_100_is_refused() -> None:
    state = replace(state_for_phase(Phase.DUAL_WRITE), dual_write_percent=Decimal("100.1"))
    assert any("dual-write share" in problem for problem in state.problems())
