"""Balance monitors (events/monitors.py): a monitor fires one `crossed` event per crossing of
its line, right after the movement that crossed it, re-arms when the balance is back, applies
to every wallet of its currency when it names none, and never fires twice for one movement.
On both stores: MongoDB's log (phase 0) and the TigerBeetle store's outbox (phase 4)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from domain import errors
from domain.ids import WalletKey
from events.delivery import render_event
from events.models import BalanceMonitor, Delivery, Event, MonitorState, Subscription
from events.tasks import collect_events_now
from flags.phases import Phase
from tests.migration.conftest import Stores, enter_phase, new_key, tx

pytestmark = [
    pytest.mark.usefixtures("criteria_not_awaited"),
    pytest.mark.parametrize("phase", [Phase.LEGACY, Phase.TIGERBEETLE_ONLY]),
]


def monitor(key: WalletKey | None, *, direction: str, threshold_minor: int) -> BalanceMonitor:
    """On one wallet, or (key None) on every USD wallet."""
    return BalanceMonitor.objects.create(
        currency=key.currency if key else "USD",
        client_id=key.client_id if key else "",
        country=key.country if key else "",
        direction=direction,
        threshold_minor=threshold_minor,
    )


def collect(stores: Stores) -> dict[str, Any]:
    return collect_events_now(stores.runtime)


def crossings(key: WalletKey) -> list[tuple[str, int | None]]:
    """The wallet's `crossed` events: (the side crossed to, the balance after)."""
    return list(
        Event.objects.filter(client_id=key.client_id, type="crossed")
        .order_by("id")
        .values_list("crossed_to", "available_minor")
    )


def feed(key: WalletKey) -> list[tuple[str, int | None]]:
    return list(
        Event.objects.filter(client_id=key.client_id)
        .order_by("id")
        .values_list("type", "available_minor")
    )


def test_several_movements_below_the_line_fire_once(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    key = new_key()
    watching = monitor(key, direction="below", threshold_minor=500)
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 600, tx())  # 400: crosses
    stores.phased.subtract_credit(key, 100, tx())  # 300: still below
    stores.phased.subtract_credit(key, 100, tx())  # 200: still below

    collect(stores)

    assert crossings(key) == [("below", 400)]
    state = MonitorState.objects.get(monitor=watching)
    assert (state.fired, state.available_minor, state.firings) == (True, 200, 1)
    crossed = Event.objects.get(client_id=key.client_id, type="crossed")
    debit = Event.objects.get(client_id=key.client_id, amount_minor=600)
    assert crossed.caused_by == debit.event_id and crossed.monitor_id == watching.pk
    assert crossed.amount_minor == 500 and crossed.occurred_at == debit.occurred_at
    rendered = render_event(crossed)
    assert rendered["type"] == "crossed" and rendered["amount"] == "5.00"
    assert rendered["crossing"] == {
        "monitor_id": watching.pk,
        "crossed_to": "below",
        "line": "5.00",
        "caused_by": debit.event_id,
    }
    assert rendered["balance_after"]["credit"] == "4.00"
    assert render_event(debit)["crossing"] is None


def test_it_rearms_when_the_balance_crosses_back_and_fires_again(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    key = new_key()
    monitor(key, direction="below", threshold_minor=500)
    above = monitor(key, direction="above", threshold_minor=1_500)
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 600, tx())  # 400: below
    collect(stores)
    stores.phased.add_credit(key, 300, tx())  # 700: back above the line, re-armed
    stores.phased.subtract_credit(key, 250, tx())  # 450: below again
    stores.phased.add_credit(key, 1_100, tx())  # 1,550: above the other line
    collect(stores)

    assert crossings(key) == [("below", 400), ("below", 450), ("above", 1_550)]
    assert MonitorState.objects.get(monitor=above).fired
    assert feed(key) == [
        ("posted", 1_000),
        ("posted", 400),
        ("crossed", 400),  # right after the movement that crossed
        ("posted", 700),
        ("posted", 450),
        ("crossed", 450),
        ("posted", 1_550),
        ("crossed", 1_550),
    ]


def test_a_currency_wide_monitor_watches_every_wallet_of_its_currency(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    first, second, euros = new_key(), new_key(), new_key("EUR")
    everyone = monitor(None, direction="below", threshold_minor=100)
    for key in (first, second, euros):
        stores.phased.add_credit(key, 150, tx())
        stores.phased.subtract_credit(key, 100, tx())  # 50: below

    collect(stores)

    assert crossings(first) == [("below", 50)]
    assert crossings(second) == [("below", 50)]
    assert crossings(euros) == []
    assert MonitorState.objects.filter(monitor=everyone, fired=True).count() == 2


def test_collecting_again_fires_nothing_new(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    key = new_key()
    monitor(key, direction="below", threshold_minor=500)
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 700, tx())
    collect(stores)
    log = stores.mongo.database.log()
    log.update_many({}, {"$set": {"event_pending": True}})  # as if never unmarked

    again = collect(stores)

    assert again["inserted"] == 0
    assert crossings(key) == [("below", 300)]
    assert MonitorState.objects.get().firings == 1


def test_a_monitor_created_while_the_wallet_is_below_fires_at_its_next_movement(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    key = new_key()
    stores.phased.add_credit(key, 50, tx())
    collect(stores)
    monitor(key, direction="below", threshold_minor=100)
    assert collect(stores)["inserted"] == 0  # created: no balance read, nothing fires

    stores.phased.add_credit(key, 10, tx())  # 60: the first balance it sees, below
    stores.phased.add_credit(key, 10, tx())  # 70: still below
    collect(stores)

    assert crossings(key) == [("below", 60)]


def test_refused_debits_and_inactive_monitors_fire_nothing(stores: Stores, phase: Phase) -> None:
    enter_phase(phase)
    key = new_key()
    monitor(key, direction="below", threshold_minor=2_000)
    BalanceMonitor.objects.create(
        currency="USD", direction="above", threshold_minor=1, active=False
    )
    stores.phased.add_credit(key, 3_000, tx())
    with pytest.raises(errors.InsufficientFunds):
        stores.phased.subtract_credit(key, 5_000, tx())
    collect(stores)

    assert crossings(key) == []
    assert [t for t, _ in feed(key)] == ["posted", "refused"]


def test_crossed_events_are_delivered_to_subscriptions_of_their_type_in_wallet_order(
    stores: Stores, phase: Phase
) -> None:
    enter_phase(phase)
    user = get_user_model().objects.create_user("merchant-monitors")
    only_crossings = Subscription.objects.create(
        owner=user, url="http://127.0.0.1:9/", secret="s" * 32, event_types=["crossed"]
    )
    everything = Subscription.objects.create(owner=user, url="http://127.0.0.1:9/", secret="t" * 32)
    key = new_key()
    monitor(key, direction="below", threshold_minor=500)
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 800, tx())
    stores.phased.add_credit(key, 5, tx())
    collect(stores)

    assert [d.event.type for d in Delivery.objects.filter(subscription=only_crossings)] == [
        "crossed"
    ]
    ordered = Delivery.objects.filter(subscription=everything).order_by("event_id")
    assert [(d.event.type, d.event.available_minor) for d in ordered] == [
        ("posted", 1_000),
        ("posted", 200),
        ("crossed", 200),
        ("posted", 205),
    ]
