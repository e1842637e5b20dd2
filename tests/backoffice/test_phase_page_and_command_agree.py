"""The phase page never promises what the command refuses: over every (from, to) pair and a
spread of facts, the refusals the page previews are exactly those `change_phase` refuses with
before it starts, and a step the page lets through is not refused before it starts."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from domain import errors
from flags.models import Milestone
from flags.phases import InvalidPhaseChange, Phase
from migration import phase_change
from migration.outbox import MirrorOutbox, MirrorState, OutboxDepth
from tests.backoffice.test_product_admin import change_phase as post_phase
from tests.migration.conftest import Stores, enter_phase, new_key, tx

SHARES: dict[Phase, dict[str, Decimal]] = {
    Phase.SHADOW_READ: {"shadow_percent": Decimal(5)},
    Phase.READ_CUTOVER: {"rollout_percent": Decimal(50)},
}


class Started(Exception):
    """Raised where the step would start changing anything: nothing refused it before."""


def backfill_done(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    Milestone.objects.create(name=Milestone.BACKFILL_COMPLETED, reached_at=timezone.now())


def outbox_entry(state: str) -> Callable[[Stores, pytest.MonkeyPatch], None]:
    def make(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
        stores.mongo.add_credit(new_key(), 100, tx())
        stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": state}})

    return make


def mongodb_silent(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(outbox: MirrorOutbox) -> OutboxDepth:
        raise errors.StoreUnavailable("MongoDB failed: timed out")

    monkeypatch.setattr(MirrorOutbox, "depth", silent)


FACTS: dict[str, list[Callable[[Stores, pytest.MonkeyPatch], None]]] = {
    "ready": [backfill_done],
    "before the backfill": [],
    "pending entries": [backfill_done, outbox_entry(MirrorState.PENDING)],
    "parked entries": [backfill_done, outbox_entry(MirrorState.PARKED)],
    "waiting for the backfill": [outbox_entry(MirrorState.AWAITING_BACKFILL)],
    "MongoDB silent": [backfill_done, mongodb_silent],
}

REFUSE_ENTERING_PHASE_4 = {
    "before the backfill",
    "parked entries",
    "waiting for the backfill",
    "MongoDB silent",
}


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """change_phase raises Started where it would pause writes or flip a flag."""

    def start(*args: Any, **kwargs: Any) -> None:
        raise Started

    monkeypatch.setattr(phase_change, "apply_state", start)
    monkeypatch.setattr(phase_change, "set_writes_paused", start)


def page_refusals(product: Client, to: Phase) -> list[str] | None:
    """The refusals the page shows for the step; None when it lets the step through (to its
    confirmation, or on to change_phase)."""
    fields = {name: str(value) for name, value in SHARES.get(to, {}).items()}
    try:
        page = post_phase(product, int(to), **fields).content.decode()
    except Started:
        return None
    if 'id="phase-effects"' in page:
        return None
    errors_shown = re.search(r'<ul class="errorlist nonfield">(.*?)</ul>', page, re.S)
    assert errors_shown, f"neither refused nor let through: {to}"
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", errors_shown[1])]


def command_refusal(stores: Stores, to: Phase) -> str | None:
    """What change_phase refuses with before it starts; None when it starts."""
    try:
        phase_change.change_phase(
            to, "tester", stores.mongo, stores.tigerbeetle, **SHARES.get(to, {})
        )
    except InvalidPhaseChange as exc:
        return str(exc)
    except Started:
        return None
    raise AssertionError("change_phase neither refused nor started")


@pytest.mark.parametrize("facts", list(FACTS))
@pytest.mark.parametrize("before", list(Phase))
@pytest.mark.usefixtures("nothing_starts")
def test_the_page_previews_exactly_the_refusals_change_phase_refuses_with(
    product: Client, stores: Stores, monkeypatch: pytest.MonkeyPatch, before: Phase, facts: str
) -> None:
    enter_phase(before, rollout_percent=100, shadow_percent=10)
    for make in FACTS[facts]:
        make(stores, monkeypatch)

    for to in Phase:
        shown = page_refusals(product, to)
        refused = command_refusal(stores, to)

        assert refused == ("; ".join(shown) if shown else None), (before, to, facts)
        # The spread is not vacuous: each of its refusing facts refuses entering phase 4.
        entering_4 = to == Phase.TIGERBEETLE_ONLY != before
        assert bool(refused) == (entering_4 and facts in REFUSE_ENTERING_PHASE_4)
