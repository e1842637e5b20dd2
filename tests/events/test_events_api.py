"""`GET /api/events` pages the feed by cursor (a consumer that restarts resumes where it
stopped), filtered by wallet and type; subscriptions are managed through the API by their
owner; every refusal has its code."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from events.models import Delivery, Event, Subscription
from events.tasks import collect_events_now
from tests.conftest import api_client_for, ledger_scope
from tests.migration.conftest import Stores, new_key, tx
from tests.roles import SERVICE_ACCOUNT, role

HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def service_user() -> Any:
    user = get_user_model().objects.create_user("payments-system")
    user.groups.add(role(SERVICE_ACCOUNT))
    return user


@pytest.fixture
def api(service_user: Any) -> APIClient:
    return api_client_for(service_user)


def written(stores: Stores) -> dict[str, Any]:
    one, two = new_key(), new_key()
    ids = [tx() for _ in range(5)]
    stores.phased.add_credit(one, 1_000, ids[0])
    stores.phased.add_credit(two, 500, ids[1])
    stores.phased.subtract_credit(one, 100, ids[2])
    stores.phased.void_transaction(ids[2], voided_by="support", reason="test")
    stores.phased.add_credit(one, 10, ids[3])
    collect_events_now(stores.runtime)
    return {"ids": ids, "one": ledger_scope().ids.wallet_ref(one)}


def test_a_consumer_pages_through_the_feed_and_resumes_from_its_cursor(
    stores: Stores, api: APIClient
) -> None:
    ids = written(stores)["ids"]
    seen: list[tuple[str, str]] = []
    after = 0
    while True:  # a consumer that restarts each page, keeping only `after`
        page = api.get("/api/events", {"after": after, "limit": 2}).json()
        seen += [(e["reference_id"], e["type"]) for e in page["events"]]
        after = page["next_after"]
        if not page["has_more"]:
            break

    assert seen == [
        (ids[0], "posted"),
        (ids[1], "posted"),
        (ids[2], "posted"),
        (ids[2], "voided"),
        (ids[3], "posted"),
    ]
    stores.phased.add_credit(new_key(), 1, ids[4])
    collect_events_now(stores.runtime)
    later = api.get("/api/events", {"after": after}).json()
    assert [e["reference_id"] for e in later["events"]] == [ids[4]]
    assert api.get("/api/events", {"after": later["next_after"]}).json() == {
        "events": [],
        "next_after": later["next_after"],
        "has_more": False,
    }


def test_events_are_filtered_by_wallet_and_type(stores: Stores, api: APIClient) -> None:
    feed = written(stores)
    ids = feed["ids"]

    by_wallet = api.get("/api/events", {"wallet": feed["one"]}).json()["events"]
    by_type = api.get("/api/events", {"type": "voided,refused"}).json()["events"]
    both = api.get("/api/events", {"wallet": feed["one"], "type": "posted"}).json()["events"]

    assert [e["reference_id"] for e in by_wallet] == [ids[0], ids[2], ids[2], ids[3]]
    assert {e["wallet"]["id"] for e in by_wallet} == {feed["one"]}
    assert [(e["reference_id"], e["type"]) for e in by_type] == [(ids[2], "voided")]
    assert [e["reference_id"] for e in both] == [ids[0], ids[2], ids[3]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"after": "x"}, "invalid_cursor"),
        ({"after": "-1"}, "invalid_cursor"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "501"}, "invalid_limit"),
        ({"wallet": "client-1"}, "invalid_wallet"),
        ({"type": "posted,moved"}, "invalid_event_type"),
    ],
)
def test_a_bad_query_is_refused_with_its_code(
    db: None, api: APIClient, params: dict[str, str], code: str
) -> None:
    response = api.get("/api/events", params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_reading_events_needs_the_permission(db: None) -> None:
    stranger = api_client_for(get_user_model().objects.create_user("stranger"))

    assert stranger.get("/api/events").status_code == 403
    assert APIClient().get("/api/events").status_code == 401


def test_a_service_account_manages_its_own_subscriptions(db: None, api: APIClient) -> None:
    created = api.post(
        "/api/event-subscriptions", {"url": HOOK_URL, "event_types": ["posted"]}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    assert len(body["secret"]) == 64 and body["event_types"] == ["posted"]
    listed = api.get("/api/event-subscriptions").json()
    assert [s["id"] for s in listed] == [body["id"]] and "secret" not in listed[0]

    other = get_user_model().objects.create_user("other-system")
    other.groups.add(role(SERVICE_ACCOUNT))
    theirs = api_client_for(other)
    for response in (
        theirs.get(f"/api/event-subscriptions/{body['id']}"),
        theirs.delete(f"/api/event-subscriptions/{body['id']}"),
        theirs.post(f"/api/event-subscriptions/{body['id']}/replay", {"after": 0}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "subscription_not_found"

    assert api.delete(f"/api/event-subscriptions/{body['id']}").status_code == 204
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"url": "not a url"},
        {"url": HOOK_URL, "event_types": ["moved"]},
        {"url": HOOK_URL, "secret": "short"},
        {"url": HOOK_URL, "colour": "blue"},
    ],
)
def test_a_bad_subscription_is_refused(db: None, api: APIClient, body: dict[str, Any]) -> None:
    response = api.post("/api/event-subscriptions", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_a_range_is_replayed_through_the_api(stores: Stores, api: APIClient) -> None:
    written(stores)
    created = api.post("/api/event-subscriptions", {"url": HOOK_URL}, format="json").json()
    first, *_, last = Event.objects.order_by("id")

    response = api.post(
        f"/api/event-subscriptions/{created['id']}/replay",
        {"after": first.id, "until": last.id - 1},
        format="json",
    )

    assert response.json() == {"replayed": 3}
    assert Delivery.objects.filter(state="pending").count() == 3
