"""`/api/balance-monitors`: a service account creates a monitor (the line as a decimal string
in its currency), reads it with the wallets it fired on, and deactivates it; each refusal is
a machine-readable code; without the permission, 403."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from events.models import BalanceMonitor
from events.tasks import collect_events_now
from tests.conftest import api_client_for, ledger_scope
from tests.migration.conftest import Stores, new_key, tx
from tests.roles import SERVICE_ACCOUNT, role

MONITORS = "/api/balance-monitors"


@pytest.fixture
def api(db: None) -> APIClient:
    user = get_user_model().objects.create_user("payments-system")
    user.groups.add(role(SERVICE_ACCOUNT))
    return api_client_for(user)


def code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def test_a_service_account_creates_reads_and_deactivates_a_monitor(
    stores: Stores, api: APIClient
) -> None:
    key = new_key()
    created = api.post(
        MONITORS,
        {
            "currency": "usd",
            "direction": "below",
            "threshold": "5.00",
            "wallet": {"client_id": key.client_id, "country": "us"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["currency"], body["threshold"], body["direction"]) == ("USD", "5.00", "below")
    assert body["wallet"] == {"client_id": key.client_id, "country": "USA", "issuer": None}
    assert BalanceMonitor.objects.get().threshold_minor == 500
    stores.phased.add_credit(key, 1_000, tx())
    stores.phased.subtract_credit(key, 700, tx())
    collect_events_now(stores.runtime)

    read = api.get(f"{MONITORS}/{body['id']}").json()
    assert read["fired_on"] == [ledger_scope().ids.wallet_ref(key)]
    assert [m["id"] for m in api.get(MONITORS).json()] == [body["id"]]
    assert api.delete(f"{MONITORS}/{body['id']}").status_code == 204
    assert not BalanceMonitor.objects.get().active


def test_a_currency_wide_monitor_names_no_wallet(db: None, api: APIClient) -> None:
    created = api.post(
        MONITORS, {"currency": "JPY", "direction": "above", "threshold": "1000"}, format="json"
    )

    assert created.status_code == 201 and created.json()["wallet"] is None
    assert BalanceMonitor.objects.get().threshold_minor == 1_000


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"threshold": "1.005"}, "invalid_amount"),
        ({"threshold": "0"}, "invalid_amount"),
        ({"threshold": "-3"}, "invalid_amount"),
        ({"currency": "XYZ"}, "unknown_currency"),
        ({"wallet": {"client_id": "c-1", "country": "ZZZ"}}, "unknown_country"),
        ({"wallet": {"country": "USA"}}, "validation_error"),
        ({"direction": "sideways"}, "validation_error"),
        ({"colour": "red"}, "validation_error"),
    ],
)
def test_refusals_are_machine_readable(
    db: None, api: APIClient, fields: dict[str, str], expected: str
) -> None:
    body = {"currency": "USD", "direction": "below", "threshold": "10", **fields}

    refused = api.post(MONITORS, body, format="json")

    assert (refused.status_code, code(refused)) == (400, expected)
    assert not BalanceMonitor.objects.exists()


def test_an_unknown_monitor_is_404_and_a_user_without_the_permission_403(
    db: None, api: APIClient
) -> None:
    assert code(api.get(f"{MONITORS}/999999")) == "monitor_not_found"
    assert api.delete(f"{MONITORS}/{2**63}").status_code == 404
    stranger = api_client_for(get_user_model().objects.create_user("stranger"))
    assert stranger.get(MONITORS).status_code == 403
    assert stranger.post(MONITORS, {}, format="json").status_code == 403
