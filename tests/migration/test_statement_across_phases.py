"""A wallet's statement across the migration: written in phase 0, read at each step of the walk
to phase 4 (MongoDB answering, then TigerBeetle), written again in phase 4, read over a
period across the phase change, and after the step back to 3 from both stores. The same
period answers the same CSV in every phase, and a statement's closing is the balance each
store reads."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from rest_framework.test import APIClient

from domain.ids import WalletKey
from domain.statements import fields_of
from flags.phases import Phase
from ledger.statements import statement_csv, wallet_statement
from tests.api.test_statement_api import STATEMENT_PERMISSIONS, now_text, reconciles, rows
from tests.conftest import token_api_client
from tests.migration.conftest import Stores, new_key
from tests.migration.test_history_walk import phase, url, void, walk_to_phase_4, write

pytestmark = pytest.mark.usefixtures(
    "criteria_not_awaited", "rollout_in_one_step", "steps_without_four_eyes"
)


def statement(api: APIClient, key: WalletKey, start: str, end: str) -> Any:
    return api.get(f"{url(key)}/statement", {"from": start, "to": end})


def closing_is_the_balance(found: list[dict[str, str]], stores: Stores, key: WalletKey) -> None:
    for store in (stores.phased, stores.tigerbeetle):
        balance = store.get_balance(key)
        closing = found[-1]
        assert (
            Decimal(closing["available"]),
            Decimal(closing["held"]),
            Decimal(closing["spent"]),
            Decimal(closing["received"]),
        ) == (balance.credit, balance.held, balance.debit, balance.historical_credit)


def test_a_statement_answers_the_same_in_every_phase_and_across_a_phase_change(
    stores: Stores,
) -> None:
    api = token_api_client(STATEMENT_PERMISSIONS)
    key = new_key()
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    write(api, key, "credits", "100.00")
    debit = write(api, key, "debits", "12.50")
    middle = now_text()
    write(api, key, "credits", "7.25")
    void(api, debit)
    end_of_phase_0 = now_text()
    in_phase_0 = statement(api, key, middle, end_of_phase_0)
    whole_phase_0 = statement(api, key, start, end_of_phase_0)
    reconciles(rows(in_phase_0))
    assert [row["kind"] for row in rows(in_phase_0)][1:-1] == ["credit", "void_of_debit"]

    walk_to_phase_4()
    for earlier, now in (
        (in_phase_0, (middle, end_of_phase_0)),
        (whole_phase_0, (start, end_of_phase_0)),
    ):
        assert statement(api, key, *now).content == earlier.content

    write(api, key, "debits", "40.00")
    write(api, key, "credits", "1.00")
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    across = rows(statement(api, key, middle, end))
    reconciles(across)
    assert [row["kind"] for row in across][1:-1] == ["credit", "void_of_debit", "debit", "credit"]
    assert (across[0]["available"], across[-1]["available"]) == ("87.50", "68.25")
    closing_is_the_balance(across, stores, key)

    phase(Phase.READ_CUTOVER)  # back: the phase-4 writes are copied back into MongoDB
    assert statement(api, key, middle, end).content.decode() == _csv(across)
    period = (datetime.fromisoformat(middle), datetime.fromisoformat(end))
    from_mongo = wallet_statement(stores.mongo, key, period=period)
    from_tigerbeetle = wallet_statement(stores.tigerbeetle, key, period=period)
    assert statement_csv(from_mongo) == statement_csv(from_tigerbeetle)
    assert from_mongo.reconciled and from_tigerbeetle.reconciled
    assert fields_of(from_mongo.closing) == fields_of(stores.mongo.get_balance(key))


def _csv(found: list[dict[str, str]]) -> str:
    out = StringIO()
    writer = csv.DictWriter(out, fieldnames=list(found[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(found)
    return out.getvalue()
