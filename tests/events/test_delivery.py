"""Signed webhook deliveries to a real HTTP receiver on loopback: verified with the docs'
receiver example, in order per wallet, retried with backoff then failed, every attempt kept,
replayed on demand."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from domain import errors
from events.delivery import DeliveryPolicy, deliver_due, delivery_body, replay, replay_range
from events.models import Delivery, DeliveryAttempt, Event, Subscription
from events.signing import signature_header
from events.tasks import collect_events_now
from tests.events.receiver import Receiver, receiver_example, running_receiver
from tests.migration.conftest import Stores, new_key, tx

SECRET = "s3cret-of-the-subscriber-0123456789"
FAST = DeliveryPolicy(timeout_s=2.0, max_attempts=3, backoff_base_s=0.05, backoff_max_s=1.0)


def subscribe(receiver: Receiver, *, event_types: list[str] | None = None) -> Subscription:
    owner = get_user_model().objects.create_user(f"hooks-{time.monotonic_ns()}")
    return Subscription.objects.create(
        owner=owner, url=receiver.url, secret=receiver.secret, event_types=event_types or []
    )


def deliver_all(policy: DeliveryPolicy = FAST, *, rounds: int = 50) -> None:
    """Deliver until nothing is pending or every round found nothing due for a while."""
    for _ in range(rounds):
        deliver_due(policy, limit=100)
        if not Delivery.objects.filter(state=Delivery.State.PENDING).exists():
            return
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Any:
    with running_receiver(SECRET) as running:
        yield running


def test_every_event_reaches_the_receiver_signed_and_in_order(
    stores: Stores, receiver: Receiver
) -> None:
    subscribe(receiver)
    key = new_key()
    first, second = tx(), tx()
    stores.phased.add_credit(key, 1_000, first)
    stores.phased.subtract_credit(key, 400, second)
    stores.phased.void_transaction(second, voided_by="support", reason="duplicate")
    collect_events_now(stores.runtime)

    deliver_all()

    assert [(e["reference_id"], e["type"]) for e in receiver.received] == [
        (first, "posted"),
        (second, "posted"),
        (second, "voided"),
    ]
    voided = receiver.received[-1]
    assert voided["amount"] == "4.00" and voided["currency"] == "USD"
    assert voided["balance_after"]["credit"] == "10.00"
    assert receiver.refused == []
    assert set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}


def test_a_subscription_gets_only_its_types(stores: Stores, receiver: Receiver) -> None:
    subscribe(receiver, event_types=["refused"])
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    refused = tx()
    with pytest.raises(errors.InsufficientFunds):
        stores.phased.subtract_credit(key, 500, refused)
    collect_events_now(stores.runtime)

    deliver_all()

    assert [(e["reference_id"], e["type"]) for e in receiver.received] == [(refused, "refused")]
    assert receiver.received[0]["balance_after"] is None


def test_the_receiver_example_rejects_a_forged_and_a_stale_signature() -> None:
    example = receiver_example()
    body = b'{"type":"posted"}'
    now = int(time.time())
    good = signature_header(SECRET, timestamp=now, body=body)
    example["verify"](SECRET, good, body)  # accepted

    forged = signature_header("another-secret-0123456789abcdef", timestamp=now, body=body)
    stale = signature_header(SECRET, timestamp=now - 301, body=body)
    tampered_body = b'{"type":"voided"}'
    for header, payload, why in [
        (forged, body, "signature does not match"),
        (good, tampered_body, "signature does not match"),
        (stale, body, "stale timestamp"),
        ("v1=abc", body, "malformed Wallet-Signature header"),
    ]:
        with pytest.raises(example["SignatureRefused"], match=why):
            example["verify"](SECRET, header, payload)


def test_a_receiver_with_the_wrong_secret_refuses_and_the_delivery_is_retried(
    stores: Stores, receiver: Receiver
) -> None:
    subscription = subscribe(receiver)
    subscription.secret = "not-the-receivers-secret-0123456789"
    subscription.save()
    stores.phased.add_credit(new_key(), 100, tx())
    collect_events_now(stores.runtime)

    deliver_due(FAST, limit=10)

    assert receiver.refused == ["signature does not match"]
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("pending", 1)


def test_a_delivery_that_keeps_failing_is_retried_with_backoff_then_marked_failed(
    stores: Stores, receiver: Receiver
) -> None:
    receiver.answer = lambda event: 503
    subscribe(receiver)
    stores.phased.add_credit(new_key(), 100, tx())
    collect_events_now(stores.runtime)
    delivery = Delivery.objects.get()

    deliver_due(FAST, limit=10)
    waits = []
    for _ in range(FAST.max_attempts - 1):
        delivery.refresh_from_db()
        waits.append((delivery.next_attempt_at - timezone.now()).total_seconds())
        assert deliver_due(FAST, limit=10).attempted == 0  # not due yet
        time.sleep(FAST.retry_after_s(delivery.attempts) + 0.02)
        deliver_due(FAST, limit=10)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("attempted_at"))
    assert [(a.status_code, a.succeeded, a.error) for a in attempts] == [
        (503, False, "answered 503")
    ] * 3
    gaps = [
        (later.attempted_at - earlier.attempted_at).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
    ]
    assert gaps[0] >= FAST.retry_after_s(1) and gaps[1] >= FAST.retry_after_s(2)
    assert 0 < waits[0] <= FAST.retry_after_s(1) and waits[1] > waits[0]


def test_the_backoff_is_exponential_and_capped() -> None:
    policy = DeliveryPolicy(timeout_s=1, max_attempts=10, backoff_base_s=30, backoff_max_s=3600)

    assert [policy.retry_after_s(n) for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]


def test_a_failing_wallets_later_events_wait_while_other_wallets_go_on(
    stores: Stores, receiver: Receiver
) -> None:
    stuck, other = new_key(), new_key()
    stuck_first, stuck_second, other_credit = tx(), tx(), tx()
    receiver.answer = lambda event: 500 if event["reference_id"] == stuck_first else 204
    subscribe(receiver)
    stores.phased.add_credit(stuck, 100, stuck_first)
    stores.phased.add_credit(stuck, 100, stuck_second)
    stores.phased.add_credit(other, 100, other_credit)
    collect_events_now(stores.runtime)

    deliver_due(FAST, limit=10)

    assert [e["reference_id"] for e in receiver.received] == [other_credit]
    receiver.answer = lambda event: 204
    time.sleep(FAST.retry_after_s(1) + 0.02)
    deliver_all()
    assert [e["reference_id"] for e in receiver.received] == [
        other_credit,
        stuck_first,
        stuck_second,
    ]


def test_replay_of_one_delivery_and_of_a_range(stores: Stores, receiver: Receiver) -> None:
    subscription = subscribe(receiver)
    key = new_key()
    ids = [tx(), tx(), tx()]
    for transaction_id in ids:
        stores.phased.add_credit(key, 100, transaction_id)
    collect_events_now(stores.runtime)
    deliver_all()
    events = list(Event.objects.order_by("id"))

    replay([Delivery.objects.get(event=events[0])])
    deliver_all()
    replay_range(subscription.pk, after=events[0].id, until=events[2].id)
    deliver_all()

    assert [e["reference_id"] for e in receiver.received] == [*ids, ids[0], ids[1], ids[2]]
    assert DeliveryAttempt.objects.filter(succeeded=True).count() == 6


def test_a_subscription_made_later_gets_earlier_events_by_a_replay(
    stores: Stores, receiver: Receiver
) -> None:
    key = new_key()
    early = tx()
    stores.phased.add_credit(key, 100, early)
    collect_events_now(stores.runtime)
    subscription = subscribe(receiver)
    deliver_all()
    assert receiver.received == []
    assert replay_range(subscription.pk, after=0, until=None) == 1
    deliver_all()

    assert [e["reference_id"] for e in receiver.received] == [early]


def test_the_body_delivered_is_the_signed_one(stores: Stores) -> None:
    stores.phased.add_credit(new_key(), 100, tx())
    collect_events_now(stores.runtime)
    event = Event.objects.get()
    body = delivery_body(event)
    header = signature_header(SECRET, timestamp=int(time.time()), body=body)

    receiver_example()["verify"](SECRET, header, body)
    assert timedelta(0) <= timezone.now() - event.occurred_at
