"""Support manages balance monitors in the admin: the line as a decimal amount in the rule's
currency (refused with more decimals than the currency has), each monitor's state on every
wallet it saw and its firings."""

from __future__ import annotations

from typing import Any

from django.test import Client

from events.models import BalanceMonitor
from events.tasks import collect_events_now
from tests.migration.conftest import Stores, new_key, tx

ADD = "/admin/events/balancemonitor/add/"


def form(**fields: str) -> dict[str, str]:
    return {
        "name": "low float",
        "currency": "usd",
        "client_id": "",
        "country": "",
        "issuer": "",
        "direction": "below",
        "threshold": "100.50",
        "active": "on",
        "states-TOTAL_FORMS": "0",
        "states-INITIAL_FORMS": "0",
        "firings-TOTAL_FORMS": "0",
        "firings-INITIAL_FORMS": "0",
        **fields,
    }


def text(response: Any) -> str:
    assert response.status_code == 200
    return str(response.content.decode())


def test_support_creates_a_monitor_with_a_decimal_line(db: None, support: Client) -> None:
    response = support.post(ADD, form())

    assert response.status_code == 302, response.content.decode()[:2000]
    created = BalanceMonitor.objects.get()
    assert (created.currency, created.threshold_minor, created.direction) == (
        "USD",
        10_050,
        "below",
    )
    assert created.currency_wide and created.created_by
    assert "$100.50" in text(support.get("/admin/events/balancemonitor/"))


def test_a_line_finer_than_the_currency_or_a_wallet_without_country_is_refused(
    db: None, support: Client
) -> None:
    finer = text(support.post(ADD, form(currency="JPY", threshold="1.5")))
    assert "more than 0 decimal places" in finer
    no_country = text(support.post(ADD, form(client_id="client-1")))
    assert "names the wallet&#x27;s country" in no_country
    zero = text(support.post(ADD, form(threshold="0")))
    assert "not a positive amount" in zero
    assert not BalanceMonitor.objects.exists()


def test_support_sees_a_monitors_state_per_wallet_and_its_firings(
    stores: Stores, support: Client
) -> None:
    key = new_key()
    watching = BalanceMonitor.objects.create(
        currency="USD",
        client_id=key.client_id,
        country=key.country,
        direction="below",
        threshold_minor=500,
    )
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 700, tx())
    collect_events_now(stores.runtime)

    page = text(support.get(f"/admin/events/balancemonitor/{watching.pk}/change/"))

    assert key.client_id in page and "$3.00" in page
    assert "firings (crossed events)" in page.lower()
    assert key.client_id in text(support.get("/admin/events/monitorstate/"))
