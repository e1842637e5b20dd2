"""Balance monitors, evaluated by the collector on the events it inserts (issue 24, item 3).

A monitor is a line on the available balance (`credit`) of one wallet or of every wallet of a
currency (events.models.BalanceMonitor). Each movement's event carries the wallet's balance
right after it; in the collector's transaction, in the order the wallet's events are
inserted, each active monitor that watches the wallet compares that balance with the side it
saw last (`MonitorState`, one row per monitor and wallet): from armed to beyond the line it
fires one `crossed` event, inserted right after the movement that crossed; back on its side
it re-arms, silently. Edge-triggered: several movements beyond the line fire once.

- A `crossed` event's id is derived from the monitor's id and the crossing movement's event
  id, and a movement's event is evaluated only when it is first inserted: collecting again
  (or reading a movement from both change records across a phase change) fires nothing new.
- A monitor starts armed on every wallet, and sees only movements collected after it exists:
  created while a wallet is already beyond its line, it fires at that wallet's next movement
  that leaves the balance beyond the line (it does not read balances when it is created).
- Events without a balance (a refused debit changed nothing; a hold TigerBeetle's timeout
  expired) are skipped: the next movement's balance is compared instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils import timezone

from domain.ids import IdSpace
from events.models import BalanceMonitor, Event, EventType, MonitorState

# Active monitors of one currency read per collector batch; more is a configuration error.
MONITORS_PER_CURRENCY_MAX = 1_000


def reference_of(monitor: BalanceMonitor) -> str:
    """A `crossed` event's `reference_id`: its monitor."""
    return f"monitor-{monitor.pk}"


def with_crossings(
    events: Sequence[Event], *, ids: IdSpace
) -> tuple[list[Event], list[MonitorState]]:
    """`events` (new, not saved, in the feed's order), each followed by the `crossed` events
    it fires; and the monitor states they leave, to be saved with them (`save_states`)."""
    balanced = [event for event in events if event.available_minor is not None]
    monitors = _active_monitors({event.currency for event in balanced})
    if not monitors:
        return list(events), []
    states = {
        (state.monitor_id, state.wallet_ref): state
        for state in MonitorState.objects.filter(
            monitor__in=monitors, wallet_ref__in={event.wallet_ref for event in balanced}
        )
    }
    changed: dict[tuple[int, str], MonitorState] = {}
    rows: list[Event] = []
    for event in events:
        rows.append(event)
        if event.available_minor is None:
            continue
        for monitor in monitors:
            if not _watches(monitor, event):
                continue
            key = (monitor.pk, event.wallet_ref)
            state = states.get(key) or MonitorState(
                monitor=monitor, wallet_ref=event.wallet_ref, client_id=event.client_id
            )
            states[key] = changed[key] = state
            if _observe(monitor, state, event):
                rows.append(crossed_event(monitor, event, ids=ids))
    return rows, list(changed.values())


def _active_monitors(currencies: set[str]) -> list[BalanceMonitor]:
    if not currencies:
        return []
    monitors = list(
        BalanceMonitor.objects.filter(active=True, currency__in=currencies).order_by("id")[
            : MONITORS_PER_CURRENCY_MAX * len(currencies) + 1
        ]
    )
    assert len(monitors) <= MONITORS_PER_CURRENCY_MAX * len(currencies), "too many monitors"
    return monitors


def _watches(monitor: BalanceMonitor, event: Event) -> bool:
    return monitor.watches(
        client_id=event.client_id,
        country=event.country,
        currency=event.currency,
        issuer=event.issuer,
    )


def _observe(monitor: BalanceMonitor, state: MonitorState, event: Event) -> bool:
    """The state after the monitor saw `event`'s balance; whether it fired."""
    assert event.available_minor is not None
    beyond = monitor.beyond(event.available_minor)
    fires = beyond and not state.fired
    state.fired = beyond
    state.available_minor = event.available_minor
    state.last_event_id = event.event_id
    state.changed_at = timezone.now()
    if fires:
        state.firings += 1
    return fires


def crossed_event(monitor: BalanceMonitor, cause: Event, *, ids: IdSpace) -> Event:
    """The `crossed` event `cause`'s balance fires: the wallet, the balance and the time of
    the movement, the line as its amount."""
    return Event(
        event_id=ids.event_id(
            f"{reference_of(monitor)}:{cause.event_id}", event_type=EventType.CROSSED
        ),
        type=EventType.CROSSED,
        reference_id=reference_of(monitor),
        transaction_kind="",
        wallet_ref=cause.wallet_ref,
        client_id=cause.client_id,
        country=cause.country,
        currency=cause.currency,
        issuer=cause.issuer,
        amount_minor=monitor.threshold_minor,
        available_minor=cause.available_minor,
        held_minor=cause.held_minor,
        debit_minor=cause.debit_minor,
        historical_credit_minor=cause.historical_credit_minor,
        actor=cause.actor,
        occurred_at=cause.occurred_at,
        source=cause.source,
        monitor=monitor,
        crossed_to=monitor.direction,
        caused_by=cause.event_id,
    )


def save_states(states: Sequence[MonitorState]) -> None:
    """The monitors' states after a batch, in the collector's transaction."""
    if not states:
        return
    MonitorState.objects.bulk_create(
        states,
        update_conflicts=True,
        unique_fields=["monitor", "wallet_ref"],
        update_fields=["fired", "available_minor", "last_event_id", "firings", "changed_at"],
    )
