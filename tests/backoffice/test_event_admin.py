"""Support in the admin sees the event feed, every webhook delivery with each of its attempts,
and replays deliveries (one, or a subscription's every event)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from events.delivery import DeliveryPolicy, deliver_due
from events.models import Delivery, DeliveryAttempt, Subscription
from events.tasks import collect_events_now
from tests.migration.conftest import Stores, new_key, tx

UNREACHABLE = "http://127.0.0.1:9/hooks"  # nothing listens on the discard port
ONE_TRY = DeliveryPolicy(timeout_s=1, max_attempts=1, backoff_base_s=1, backoff_max_s=1)


def failed_delivery(stores: Stores) -> tuple[Delivery, str]:
    owner = get_user_model().objects.create_user("merchant-system")
    Subscription.objects.create(owner=owner, url=UNREACHABLE, secret="x" * 32)
    transaction_id = tx()
    stores.phased.add_credit(new_key(), 100, transaction_id)
    collect_events_now(stores.runtime)
    deliver_due(ONE_TRY, limit=10)
    return Delivery.objects.get(), transaction_id


def text(response: Any) -> str:
    assert response.status_code == 200
    return str(response.content.decode())


def test_support_sees_events_and_every_attempt_of_a_delivery(
    stores: Stores, support: Client
) -> None:
    delivery, transaction_id = failed_delivery(stores)
    assert delivery.state == Delivery.State.FAILED

    assert transaction_id in text(support.get("/admin/events/event/"))
    page = text(support.get(f"/admin/events/delivery/{delivery.pk}/change/"))
    attempt = DeliveryAttempt.objects.get()
    assert "ConnectionError" in attempt.error and "ConnectionError" in page
    assert "failed" in text(support.get("/admin/events/delivery/"))


def test_support_replays_a_failed_delivery(stores: Stores, support: Client) -> None:
    delivery, _ = failed_delivery(stores)

    response = support.post(
        "/admin/events/delivery/",
        {"action": "replay_selected", "_selected_action": [delivery.pk]},
        follow=True,
    )

    assert "1 deliveries will be sent again" in text(response)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("pending", 0)


def test_product_cannot_see_deliveries(stores: Stores, product: Client) -> None:
    failed_delivery(stores)

    assert product.get("/admin/events/delivery/").status_code == 403
