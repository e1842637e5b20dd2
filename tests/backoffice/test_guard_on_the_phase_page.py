"""The phase page says what the guard does in the phase the flags are in (phase 3: the share
it would step back to; elsewhere: that it moves nothing, never where money is written), its
last check, and marks in the audit trail a step the guard took, with what it crossed."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from flags.phases import Phase
from migration.models import GuardCheck
from migration.reconciliation import Reconciliation
from migration.tasks import guard as guard_task
from tests.migration.conftest import Stores, enter_phase, new_key, tx

PHASE_PAGE = reverse("admin:migration-phase")


def test_in_phase_3_the_page_names_the_share_the_guard_would_step_back_to(
    stores: Stores, product: Client
) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    html = product.get(PHASE_PAGE).content.decode()
    assert "steps the read rollout back to 5% read rollout without a person" in html
    assert "No check yet" in html


def test_in_phase_4_the_page_says_the_guard_never_moves_where_money_is_written(
    stores: Stores, product: Client
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    html = product.get(PHASE_PAGE).content.decode()
    assert "In phase 4 it moves nothing" in html
    assert "never moves where money is written" in html


def test_a_step_the_guard_took_shows_in_the_audit_trail_with_what_it_crossed(
    stores: Stores, product: Client, settings: Any
) -> None:
    settings.GUARD_MIN_SAMPLES = 1
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)
    key = new_key()
    stores.phased.add_credit(key, 1_000, tx())
    stores.tigerbeetle.subtract_credit(key, 1, tx())
    Reconciliation(stores.scan, stores.outbox, stores.batches).run()
    guard_task.delay()

    html = product.get(PHASE_PAGE).content.decode()

    assert "by the guard: mismatch_rate 100.000% &gt; 0.100%" in html
    assert GuardCheck.Action.STEPPED_BACK.label in html  # the last check
