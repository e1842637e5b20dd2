"""Webhook deliveries: each pending delivery POSTed, signed, to its subscription's URL, in
order per wallet and subscription, retried with exponential backoff, then failed.

A wallet's next delivery waits while an earlier one of the same subscription is pending
(retrying), so a receiver sees a wallet's events in the feed's order; one that failed every
attempt no longer holds the others back (support replays it from the admin). A delivery is
claimed by moving its `next_attempt_at` past the request's timeout (a lease) before it is
sent and marked delivered only after a 2xx answer: a worker killed in between leaves it to be
sent again once the lease passes, so a receiver sees every event at least once (the event id
tells it a repeat).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from django.db.models import Exists, OuterRef
from django.utils import timezone

from domain.money import from_minor_units
from events.collector import fan_out
from events.models import Delivery, DeliveryAttempt, Event, EventType, Subscription
from events.signing import SIGNATURE_HEADER, signature_header

ERROR_TEXT_MAX = 300
REPLAY_EVENTS_MAX = 10_000  # one replay of a range marks at most this many deliveries


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    """EVENTS_DELIVERY_* settings (wallet_site/settings.py): the n-th retry waits
    `backoff_base_s * 2**(n-1)` (at most `backoff_max_s`); after `max_attempts` tries the
    delivery is failed."""

    timeout_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float

    def __post_init__(self) -> None:
        assert self.timeout_s > 0 and self.max_attempts >= 1 and self.backoff_base_s > 0

    def retry_after_s(self, attempts: int) -> float:
        assert attempts >= 1
        return float(min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)))


def _amount(minor: int | None, currency: str) -> str | None:
    if minor is None:
        return None
    return format(from_minor_units(minor, currency), "f")


def render_event(event: Event) -> dict[str, Any]:
    """An event as the API and the webhooks show it (amounts as decimal strings in the
    wallet's currency)."""
    currency = event.currency
    balance = None
    if event.available_minor is not None:
        balance = {
            "credit": _amount(event.available_minor, currency),
            "held": _amount(event.held_minor, currency),
            "debit": _amount(event.debit_minor, currency),
            "historical_credit": _amount(event.historical_credit_minor, currency),
        }
    return {
        "id": event.id,
        "event_id": event.event_id,
        "type": event.type,
        "reference_id": event.reference_id,
        "transaction_kind": event.transaction_kind or None,
        "wallet": {
            "id": event.wallet_ref,
            "client_id": event.client_id,
            "country": event.country,
            "currency": currency,
            "issuer": event.issuer or None,
        },
        "amount": _amount(event.amount_minor, currency),
        "currency": currency,
        "balance_after": balance,
        "actor": event.actor,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "crossing": _crossing(event),
    }


def _crossing(event: Event) -> dict[str, Any] | None:
    """A `crossed` event's monitor (null once the monitor is deleted), the side of the line
    the balance crossed to, and the movement's event that crossed it; null on a movement."""
    if event.type != EventType.CROSSED:
        return None
    return {
        "monitor_id": event.monitor_id,
        "crossed_to": event.crossed_to,
        "line": _amount(event.amount_minor, event.currency),
        "caused_by": event.caused_by,
    }


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(type(value).__name__)


def delivery_body(event: Event) -> bytes:
    return json.dumps(render_event(event), separators=(",", ":"), default=_json_default).encode()


def due_deliveries(*, now: datetime, limit: int) -> list[Delivery]:
    """Pending deliveries whose time has come and that no earlier pending delivery of the
    same subscription and wallet holds back, oldest event first."""
    earlier = Delivery.objects.filter(
        state=Delivery.State.PENDING,
        subscription=OuterRef("subscription"),
        wallet_ref=OuterRef("wallet_ref"),
        event_id__lt=OuterRef("event_id"),
    )
    return list(
        Delivery.objects.filter(
            state=Delivery.State.PENDING, subscription__active=True, next_attempt_at__lte=now
        )
        .exclude(Exists(earlier))
        .select_related("subscription", "event")
        .order_by("event_id")[:limit]
    )


def _claim(delivery: Delivery, *, now: datetime, lease_s: float) -> bool:
    """The delivery is this worker's until the lease passes (no other worker sends it)."""
    leased_until = now + timedelta(seconds=lease_s)
    claimed = Delivery.objects.filter(
        pk=delivery.pk, state=Delivery.State.PENDING, next_attempt_at=delivery.next_attempt_at
    ).update(next_attempt_at=leased_until)
    return claimed == 1


def attempt(delivery: Delivery, policy: DeliveryPolicy, *, session: requests.Session) -> bool:
    """Send the delivery once; record the attempt and what became of the delivery."""
    body = delivery_body(delivery.event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(
            delivery.subscription.secret, timestamp=int(time.time()), body=body
        ),
        "Wallet-Event-Id": delivery.event.event_id,
        "Wallet-Delivery-Id": str(delivery.pk),
    }
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    try:
        response = session.post(
            delivery.subscription.url, data=body, headers=headers, timeout=policy.timeout_s
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"answered {status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
    succeeded = not error
    duration_ms = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    DeliveryAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
        succeeded=succeeded,
    )
    attempts = delivery.attempts + 1
    if succeeded:
        changes: dict[str, Any] = {
            "state": Delivery.State.DELIVERED,
            "attempts": attempts,
            "delivered_at": now,
        }
    elif attempts >= policy.max_attempts:
        changes = {"state": Delivery.State.FAILED, "attempts": attempts}
    else:
        retry_at = now + timedelta(seconds=policy.retry_after_s(attempts))
        changes = {"attempts": attempts, "next_attempt_at": retry_at}
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    return succeeded


@dataclass(frozen=True)
class DeliveryReport:
    attempted: int
    delivered: int


def deliver_due(
    policy: DeliveryPolicy, *, limit: int, session: requests.Session | None = None
) -> DeliveryReport:
    """Send due deliveries until none is due or `limit` were tried; a wallet's next one
    becomes due as soon as the one before it is delivered."""
    assert limit > 0
    own_session = session is None
    http = session or requests.Session()
    attempted = delivered = 0
    try:
        while attempted < limit:
            now = timezone.now()
            due = due_deliveries(now=now, limit=limit - attempted)
            if not due:
                break
            for delivery in due:
                if not _claim(delivery, now=now, lease_s=policy.timeout_s * 2):
                    continue
                attempted += 1
                delivered += attempt(delivery, policy, session=http)
    finally:
        if own_session:
            http.close()
    return DeliveryReport(attempted=attempted, delivered=delivered)


def replay(deliveries: list[Delivery]) -> int:
    """Send these deliveries again from the first attempt (a delivered one too): pending now."""
    return Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        state=Delivery.State.PENDING, attempts=0, next_attempt_at=timezone.now(), delivered_at=None
    )


def replay_range(subscription_id: int, *, after: int, until: int | None) -> int:
    """Every event with `after` < id <= `until` (None: no end) of the subscription's types,
    delivered again: its delivery made pending (one made now for an event from before the
    subscription), at most REPLAY_EVENTS_MAX (replay the rest from the last one's id).
    Returns how many."""
    subscription = Subscription.objects.get(pk=subscription_id)
    events = Event.objects.filter(id__gt=after).order_by("id")
    if until is not None:
        events = events.filter(id__lte=until)
    if subscription.event_types:
        events = events.filter(type__in=subscription.event_types)
    chosen = list(events[:REPLAY_EVENTS_MAX])
    fan_out(chosen, [subscription])
    return Delivery.objects.filter(subscription=subscription, event__in=chosen).update(
        state=Delivery.State.PENDING, attempts=0, next_attempt_at=timezone.now(), delivered_at=None
    )
