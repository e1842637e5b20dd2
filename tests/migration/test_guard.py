"""The guard, as a specification: a pure decision from the figures of its window to an action
(each threshold on its own; a rate judged only over enough samples; phase 3 stepped back to
the rollout step below, or from the first step to phase 2; every other phase alerted, never
moved), and its periodic task on the real stores: a threshold crossed steps the rollout back
with no person, audited as the guard with the figures, once, and phase 4 is never left."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from domain.ids import WalletKey
from flags.models import FlagChange, PhaseChange
from flags.phases import READ_ROLLOUT, Phase, client_bucket, current_state, state_for_phase
from migration import guard
from migration.guard import Breach, GuardFigures, Thresholds, decide
from migration.models import Alert, GuardCheck
from migration.reconciliation import Reconciliation
from migration.tasks import guard as guard_task
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

STEPS = (Decimal(1), Decimal(5), Decimal(25), Decimal(50), Decimal(100))
LIMITS = Thresholds(
    max_mismatch_rate=Decimal("0.001"),
    max_fallback_rate=Decimal("0.01"),
    max_tb_error_rate=Decimal("0.005"),
    max_outbox_age_s=900.0,
    min_samples=100,
)
QUIET = GuardFigures(
    window_start="2026-12-05T00:00:00+00:00",
    reads_since="2026-12-05T00:01:00+00:00",
    reads_meant=10_000,
    fallbacks=0,
    tigerbeetle_errors=0,
    compared=10_000,
    mismatched=0,
    outbox_age_s=1.0,
)


def at_rollout(percent: int) -> Any:
    return state_for_phase(Phase.READ_CUTOVER, rollout_percent=Decimal(percent))


def decided(figures: GuardFigures, state: Any = None) -> guard.GuardDecision:
    return decide(
        figures,
        state=state or at_rollout(25),
        thresholds=LIMITS,
        rollout_steps=STEPS,
        phase_2_shadow_percent=Decimal(20),
    )


def client_in_rollout(percent: int) -> str:
    """A client id whose stable bucket reads from TigerBeetle at `percent` rollout."""
    return next(
        f"guard-client-{n}" for n in count() if client_bucket(f"guard-client-{n}") < percent * 100
    )


# --- the decision: pure ---------------------------------------------------------------------


def test_quiet_figures_cross_nothing_and_move_nothing() -> None:
    assert decided(QUIET) == guard.GuardDecision(())


@pytest.mark.parametrize(
    ("change", "threshold"),
    [
        ({"mismatched": 11}, "mismatch_rate"),  # 0.11 % > 0.1 %
        ({"fallbacks": 101}, "fallback_rate"),  # 1.01 % > 1 %
        ({"fallbacks": 51, "tigerbeetle_errors": 51}, "tigerbeetle_error_rate"),  # 0.51 % > 0.5 %
        ({"outbox_age_s": 901.0}, "outbox_age"),
    ],
)
def test_each_threshold_crossed_on_its_own_steps_phase_3_back(
    change: dict[str, Any], threshold: str
) -> None:
    decision = decided(GuardFigures(**{**QUIET.__dict__, **change}))
    assert [breach.threshold for breach in decision.breaches] == [threshold]
    assert decision.step_back_to == at_rollout(5)


@pytest.mark.parametrize(
    "change",
    [
        {"mismatched": 10},  # 0.1 %: at the maximum, not over it
        {"fallbacks": 100},
        {"outbox_age_s": 900.0},
    ],
)
def test_a_figure_at_its_maximum_is_not_crossed(change: dict[str, Any]) -> None:
    assert decided(GuardFigures(**{**QUIET.__dict__, **change})).breaches == ()


def test_a_rate_over_fewer_samples_than_the_minimum_is_not_judged() -> None:
    few = GuardFigures(**{**QUIET.__dict__, "reads_meant": 99, "fallbacks": 99, "compared": 0})
    assert decided(few).breaches == ()


def test_the_rate_and_its_maximum_are_kept_as_text() -> None:
    decision = decided(GuardFigures(**{**QUIET.__dict__, "mismatched": 50}))
    assert decision.breaches == (Breach("mismatch_rate", "0.500%", "0.100%"),)


def test_a_share_between_steps_goes_back_to_the_step_below() -> None:
    crossed = GuardFigures(**{**QUIET.__dict__, "fallbacks": 500})
    assert decided(crossed, at_rollout(30)).step_back_to == at_rollout(25)


def test_from_the_first_rollout_step_the_guard_steps_back_to_phase_2_at_its_shadow_share() -> None:
    crossed = GuardFigures(**{**QUIET.__dict__, "fallbacks": 500})
    target = decided(crossed, at_rollout(1)).step_back_to
    assert target == state_for_phase(Phase.SHADOW_READ, shadow_percent=Decimal(20))


@pytest.mark.parametrize(
    "phase", [Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.TIGERBEETLE_ONLY]
)
def test_outside_phase_3_a_crossing_alerts_and_moves_nothing(phase: Phase) -> None:
    crossed = GuardFigures(**{**QUIET.__dict__, "mismatched": 500})
    decision = decided(crossed, state_for_phase(phase, rollout_percent=Decimal(100)))
    assert decision.breaches and decision.step_back_to is None
    assert "never moves where money is written" in decision.moves_nothing_because


# --- the periodic task on the real stores ----------------------------------------------------


@pytest.fixture
def guard_judges_every_sample(settings: Any) -> None:
    """A test makes a handful of reads and comparisons, not GUARD_MIN_SAMPLES (100)."""
    settings.GUARD_MIN_SAMPLES = 1


def test_the_guard_is_on_beat_every_minute() -> None:
    assert django_settings.CELERY_BEAT_SCHEDULE["guard"] == {
        "task": "ledger.guard",
        "schedule": 60.0,
    }


def test_a_mismatch_rate_over_its_maximum_steps_the_rollout_back_from_25_to_5_without_a_person(
    stores: Stores, guard_judges_every_sample: None
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())  # mirrored to TigerBeetle at once (eager)
    stores.tigerbeetle.subtract_credit(key, 1, tx())  # money moved on TigerBeetle alone
    Reconciliation(stores.scan, stores.outbox, stores.batches).run()

    result = guard_task.delay().get()

    assert result["action"] == GuardCheck.Action.STEPPED_BACK
    state = current_state()
    assert (state.phase, state.read_rollout_percent) == (Phase.READ_CUTOVER, Decimal(5))
    change = PhaseChange.objects.first()
    assert change is not None
    assert (change.actor, change.from_phase, change.to_phase, change.refused) == ("guard", 3, 3, "")
    assert change.guard_figures["breaches"] == [
        {"threshold": "mismatch_rate", "value": "100.000%", "maximum": "0.100%"}
    ]
    assert change.guard_figures["figures"]["mismatched"] == 1
    flip = FlagChange.objects.get(flag_name=READ_ROLLOUT, phase_change=change)
    assert (flip.actor, Decimal(flip.old_value), Decimal(flip.new_value)) == ("guard", 25, 5)
    alert = Alert.objects.get(kind=Alert.Kind.GUARD_STEP_BACK)
    assert alert.case.startswith("phase 3 at 25% read rollout -> phase 3 at 5% read rollout")


def test_the_guard_does_not_step_back_again_on_the_data_that_made_it_step_back(
    stores: Stores, guard_judges_every_sample: None
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.tigerbeetle.subtract_credit(key, 1, tx())
    Reconciliation(stores.scan, stores.outbox, stores.batches).run()
    assert guard_task.delay().get()["action"] == GuardCheck.Action.STEPPED_BACK

    again = guard_task.delay().get()

    assert again["action"] == GuardCheck.Action.NONE
    assert current_state().read_rollout_percent == Decimal(5)


def test_fallbacks_at_the_first_step_take_the_migration_back_to_phase_2(
    stores: Stores, guard_judges_every_sample: None
) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=30)
    enter_phase(Phase.READ_CUTOVER, rollout_percent=1)
    key = WalletKey(client_in_rollout(1), "USA", "USD")
    legacy_wallet(stores, key, credit_minor=500, debit_minor=0)  # TigerBeetle lacks it
    assert guard_task.delay().get()["action"] == GuardCheck.Action.NONE  # the window's start

    for _ in range(3):
        assert stores.phased.get_balance(key).credit_minor == 500  # served by MongoDB
    result = guard_task.delay().get()

    assert [breach["threshold"] for breach in result["breaches"]] == ["fallback_rate"]
    state = current_state()
    assert (state.phase, state.shadow_read_percent) == (Phase.SHADOW_READ, Decimal(30))
    change = PhaseChange.objects.first()
    assert change is not None and change.actor == "guard"


def test_reads_tigerbeetle_failed_count_as_its_error_rate(
    stores: Stores, guard_judges_every_sample: None, settings: Any
) -> None:
    settings.GUARD_MAX_FALLBACK_RATE = Decimal(1)  # only the error rate can cross
    enter_phase(Phase.READ_CUTOVER, rollout_percent=5)
    key = WalletKey(client_in_rollout(5), "USA", "USD")
    stores.phased.add_credit(key, 700, tx())
    assert guard_task.delay().get()["action"] == GuardCheck.Action.NONE
    stores.phased.breaker.open()  # TigerBeetle failed enough reads: the breaker is open
    try:
        assert stores.phased.get_balance(key).credit_minor == 700
    finally:
        stores.phased.breaker.close()

    result = guard_task.delay().get()

    assert [breach["threshold"] for breach in result["breaches"]] == ["tigerbeetle_error_rate"]
    assert current_state().read_rollout_percent == Decimal(1)


def test_in_phase_4_the_guard_alerts_once_and_never_leaves_it(
    stores: Stores, alert_webhook: list[dict[str, Any]]
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    stores.mongo.add_credit(new_key(), 100, tx(), created_at=an_hour_ago)  # never mirrored

    first = guard_task.delay().get()
    second = guard_task.delay().get()

    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    assert not PhaseChange.objects.exists()
    for result in (first, second):
        assert result["action"] == GuardCheck.Action.ALERTED
        assert [breach["threshold"] for breach in result["breaches"]] == ["outbox_age"]
        assert "never moves where money is written" in result["outcome"]
    alert = Alert.objects.get()
    assert (alert.kind, alert.case, alert.count) == (
        Alert.Kind.GUARD_THRESHOLD,
        "outbox_age in phase 4",
        2,
    )
    assert [body["alert"] for body in alert_webhook] == ["guard_threshold"]
    assert alert_webhook[0]["link"] == "http://backoffice.test/admin/migration/phase/"


def test_while_a_phase_change_pauses_writes_the_guard_skips_its_check(stores: Stores) -> None:
    from flags.audit import set_writes_paused

    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    set_writes_paused(True, actor="test")
    assert guard_task.delay().get()["action"] == GuardCheck.Action.SKIPPED
