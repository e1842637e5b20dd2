"""`GET .../statement` through Django's full HTTP stack, per store (MongoDB and TigerBeetle, on
the embedded engine or the real server with TB_ADDRESSES): the CSV's opening and closing rows
reconcile with its rows and with the ledger (the balance read from the store, the balance
history at the bounds), for a period in the middle of the history, for an empty one and for
the whole; every refusal of the period with its code."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from api import views
from domain.history import HistoryQuery
from domain.ids import WalletKey
from domain.wallets import WalletStore
from ledger.service import WalletService
from ledger.statements import CSV_HEADER
from tests.api.test_hold_api import HOLD_PERMISSIONS
from tests.conftest import WALLET_API_PERMISSIONS, token_api_client

STATEMENT_PERMISSIONS = (*WALLET_API_PERMISSIONS, *HOLD_PERMISSIONS, "registry.view_statement")


@pytest.fixture
def api(wallet_store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> APIClient:
    """A REST client holding the wallet, hold and statement permissions, served by the store
    under test."""
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(wallet_store))
    return token_api_client(STATEMENT_PERMISSIONS)


def wallet_url(client_id: str) -> str:
    return f"/api/clients/{client_id}/wallets/USA/USD"


def post(api: APIClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(path, body, format="json")
    assert response.status_code in (200, 201), response.content
    time.sleep(0.003)  # stores keep whole milliseconds: each write at a time of its own
    return dict(response.json())


def now_text() -> str:
    time.sleep(0.003)
    moment = datetime.now(UTC)
    time.sleep(0.003)
    return moment.isoformat().replace("+00:00", "Z")


def statement(api: APIClient, client_id: str, **period: str) -> Any:
    return api.get(f"{wallet_url(client_id)}/statement", period)


def rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="statement-')
    reader = csv.DictReader(io.StringIO(response.content.decode()))
    assert tuple(reader.fieldnames or ()) == CSV_HEADER
    found = list(reader)
    assert found[0]["kind"] == "period_opening" and found[-1]["kind"] == "period_closing"
    assert {row["currency"] for row in found} == {"USD"}
    return found


def reconciles(found: list[dict[str, str]]) -> None:
    """opening + each row's change = closing, for available and held; each row's balance is
    the previous one's with its change; the closing row's change is the period's."""
    opening, lines, closing = found[0], found[1:-1], found[-1]
    for name in ("available", "held"):
        running = Decimal(opening[name])
        for line in lines:
            running += Decimal(line[f"{name}_change"])
            assert Decimal(line[name]) == running, (name, line)
        assert Decimal(closing[name]) == running
        assert Decimal(closing[f"{name}_change"]) == running - Decimal(opening[name])


def amount_sums(found: list[dict[str, str]]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = {}
    for line in found[1:-1]:
        sums[line["kind"]] = sums.get(line["kind"], Decimal(0)) + Decimal(line["amount"])
    return sums


def busy_wallet(api: APIClient) -> tuple[str, list[str]]:
    """A wallet with every kind of point, and times between its phases: credits, a debit,
    voids of a debit and of a credit, a hold captured in part, one released, one expired."""
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    url = wallet_url(client_id)
    marks = []
    post(api, f"{url}/credits", {"transaction_id": f"tx-{uuid.uuid4().hex}", "amount": "100.00"})
    marks.append(now_text())  # 0: after the first credit
    debit = f"ref-{uuid.uuid4().hex}"
    post(api, f"{url}/debits", {"reference_id": debit, "amount": "30.00"})
    small_credit = f"tx-{uuid.uuid4().hex}"
    post(api, f"{url}/credits", {"transaction_id": small_credit, "amount": "5.25"})
    post(api, f"/api/transactions/{debit}/void", {"reason": "statement"})
    post(api, f"/api/transactions/{small_credit}/void", {"reason": "statement"})
    captured, released = f"hold-{uuid.uuid4().hex}", f"hold-{uuid.uuid4().hex}"
    post(api, f"{url}/holds", {"hold_id": captured, "amount": "20.00", "expires_in_s": 3600})
    post(api, f"{url}/holds", {"hold_id": released, "amount": "7.00", "expires_in_s": 3600})
    post(api, f"/api/holds/{captured}/capture", {"amount": "12.50"})
    post(api, f"/api/holds/{released}/release", {})
    marks.append(now_text())  # 1: before the expiring hold
    post(
        api,
        f"{url}/holds",
        {"hold_id": f"hold-{uuid.uuid4().hex}", "amount": "2.00", "expires_in_s": 1},
    )
    time.sleep(1.05)
    post(api, f"{url}/credits", {"transaction_id": f"tx-{uuid.uuid4().hex}", "amount": "0.10"})
    marks.append(now_text())  # 2: after everything
    return client_id, marks


def test_a_statement_of_the_whole_history_reconciles_with_the_balance_read_from_the_store(
    api: APIClient, wallet_store: WalletStore
) -> None:
    client_id, marks = busy_wallet(api)
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    found = rows(statement(api, client_id, **{"from": start, "to": end}))

    reconciles(found)
    assert [line["kind"] for line in found[1:-1]] == [
        "credit",
        "debit",
        "credit",
        "void_of_debit",
        "void_of_credit",
        "hold",
        "hold",
        "capture",
        "release",
        "hold",
        "expire",
        "credit",
    ]
    assert (found[0]["available"], found[0]["held"], found[0]["spent"]) == ("0.00", "0.00", "0.00")
    assert amount_sums(found) == {
        "credit": Decimal("105.35"),
        "debit": Decimal("30.00"),
        "void_of_debit": Decimal("30.00"),
        "void_of_credit": Decimal("5.25"),
        "hold": Decimal("29.00"),
        "capture": Decimal("12.50"),
        "release": Decimal("7.00"),
        "expire": Decimal("2.00"),
    }
    # 100 + 5.25 + 0.10 - 30 + 30 - 5.25 - 12.50 captured
    balance = api.get(wallet_url(client_id)).json()
    closing = found[-1]
    assert (closing["available"], closing["held"]) == (balance["credit"], balance["held"])
    assert (closing["spent"], closing["received"]) == (
        balance["debit"],
        balance["historical_credit"],
    )
    assert closing["available"] == "87.60"
    key = WalletKey(client_id=client_id, country="USA", currency="USD", issuer=None)
    read = wallet_store.get_balance(key)
    assert (read.credit, read.held, read.debit) == (
        Decimal(closing["available"]),
        Decimal(closing["held"]),
        Decimal(closing["spent"]),
    )
    assert marks


def test_a_period_in_the_middle_opens_and_closes_at_the_history_balance_at_its_bounds(
    api: APIClient, wallet_store: WalletStore
) -> None:
    client_id, marks = busy_wallet(api)
    key = WalletKey(client_id=client_id, country="USA", currency="USD", issuer=None)

    found = rows(statement(api, client_id, **{"from": marks[0], "to": marks[1]}))

    reconciles(found)
    assert [line["kind"] for line in found[1:-1]] == [
        "debit",
        "credit",
        "void_of_debit",
        "void_of_credit",
        "hold",
        "hold",
        "capture",
        "release",
    ]

    def balance_at(moment: str) -> Any:
        to_time = datetime.fromisoformat(moment)
        return (
            wallet_store.history(HistoryQuery(key=key, limit=1, to_time=to_time)).points[0].balance
        )

    for row, moment in ((found[0], marks[0]), (found[-1], marks[1])):
        balance = balance_at(moment)
        assert (row["available"], row["held"], row["spent"], row["received"]) == (
            format(balance.credit, "f"),
            format(balance.held, "f"),
            format(balance.debit, "f"),
            format(balance.historical_credit, "f"),
        )
    assert (found[0]["available"], found[-1]["available"]) == ("100.00", "87.50")
    assert found[-1]["spent"] == "47.75"  # debit 30 + void of a credit 5.25 + captured 12.50


def test_an_empty_period_opens_and_closes_at_the_same_balance(api: APIClient) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    post(
        api,
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": f"tx-{uuid.uuid4().hex}", "amount": "9.99"},
    )
    start = now_text()
    end = now_text()

    found = rows(statement(api, client_id, **{"from": start, "to": end}))

    assert len(found) == 2
    reconciles(found)
    assert found[0]["available"] == found[-1]["available"] == "9.99"
    assert (found[-1]["available_change"], found[-1]["held_change"]) == ("0.00", "0.00")


def test_a_statement_is_csv_whatever_the_client_accepts_and_needs_its_permission(
    api: APIClient,
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    post(
        api,
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": f"tx-{uuid.uuid4().hex}", "amount": "1.00"},
    )
    period = {"from": "2026-01-01T00:00:00Z", "to": "2026-12-31T00:00:00+02:00"}

    as_json = api.get(f"{wallet_url(client_id)}/statement", period, HTTP_ACCEPT="application/json")
    assert rows(as_json)
    without = token_api_client(WALLET_API_PERMISSIONS)
    refused = without.get(f"{wallet_url(client_id)}/statement", period)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    ("period", "code", "field"),
    [
        ({"to": "2026-12-01T00:00:00Z"}, "invalid_time", "from"),
        ({"from": "2026-12-01T00:00:00Z"}, "invalid_time", "to"),
        ({"from": "2026-12-01T00:00:00", "to": "2026-12-02T00:00:00Z"}, "invalid_time", "from"),
        ({"from": "yesterday", "to": "2026-12-02T00:00:00Z"}, "invalid_time", "from"),
        (
            {"from": "2026-12-02T00:00:00Z", "to": "2026-12-02T00:00:00Z"},
            "invalid_time_range",
            "from",
        ),
        (
            {"from": "2026-12-03T00:00:00Z", "to": "2026-12-02T00:00:00Z"},
            "invalid_time_range",
            "from",
        ),
        (
            {"from": "2025-01-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"},
            "statement_period_too_long",
            "to",
        ),
    ],
)
def test_a_bad_period_is_400_with_its_code(
    api: APIClient, period: dict[str, str], code: str, field: str
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:10]}"
    post(
        api,
        f"{wallet_url(client_id)}/credits",
        {"transaction_id": f"tx-{uuid.uuid4().hex}", "amount": "1.00"},
    )

    response = statement(api, client_id, **period)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["details"].get("field")) == (code, field)


def test_a_wallet_no_store_holds_is_404(api: APIClient) -> None:
    response = statement(
        api, "client-nobody", **{"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "wallet_not_found"
