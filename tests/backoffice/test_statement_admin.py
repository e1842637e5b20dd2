"""The statement page in the admin, for a support user (not a superuser): opened from the
wallet page, money with its currency, the opening and closing lines, the CSV download; a
role without the statement permission is refused."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from backoffice.statement_admin import statement_url
from domain.ids import WalletKey
from flags.phases import Phase
from registry.models import WalletAccount
from tests.migration.conftest import Stores, enter_phase, new_key, tx


@pytest.fixture
def key(stores: Stores) -> WalletKey:
    """A mirrored wallet: 100.00 credited, 30.00 debited, a hold of 5.00 open."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    stores.phased.add_credit(key, 10_000, tx())
    time.sleep(0.003)
    stores.phased.subtract_credit(key, 3_000, tx())
    time.sleep(0.003)
    stores.phased.place_hold(key, 500, f"hold-{tx()}", timeout_s=3600)
    return key


def period() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "from": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "to": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }


def test_support_opens_the_statement_from_the_wallet_page(
    support: Client, support_user: Any, key: WalletKey
) -> None:
    assert not support_user.is_superuser
    row = WalletAccount.objects.get(client_id=key.client_id)
    page = support.get(f"/admin/registry/walletaccount/{row.pk}/change/").content.decode()
    assert 'id="wallet-statement"' in page

    response = support.get(statement_url(key, **period()))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="statement-opening"' in html and 'id="statement-closing"' in html
    assert 'id="statement-reconciled"' in html
    closing = html[html.index('id="statement-closing"') :]
    closing = closing[: closing.index("</tr>")]
    assert "$65.00" in closing  # available: 100 - 30 - 5 held
    assert "$5.00" in closing and "$30.00" in closing and "$100.00" in closing
    lines = html[html.index('id="statement-lines"') :]
    assert "debit" in lines and "hold" in lines and "$30.00" in lines


def test_support_downloads_the_same_statement_as_csv(support: Client, key: WalletKey) -> None:
    response = support.get(statement_url(key, **period(), format="csv"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    found = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["kind"] for row in found] == [
        "period_opening",
        "credit",
        "debit",
        "hold",
        "period_closing",
    ]
    assert (found[-1]["available"], found[-1]["held"], found[-1]["currency"]) == (
        "65.00",
        "5.00",
        "USD",
    )


def test_a_refused_period_is_shown_with_its_reason(support: Client, key: WalletKey) -> None:
    response = support.get(
        statement_url(key, **{"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="statement-refusal"' in html and "must be earlier" in html
    assert 'id="statement-closing"' not in html


def test_a_role_without_the_statement_permission_is_refused(
    product: Client, key: WalletKey
) -> None:
    row = WalletAccount.objects.get(client_id=key.client_id)
    page = product.get(f"/admin/registry/walletaccount/{row.pk}/change/").content.decode()
    assert 'id="wallet-statement"' not in page

    assert product.get(statement_url(key, **period())).status_code == 403
