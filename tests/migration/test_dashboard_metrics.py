"""The metrics a payments team builds dashboards on, as /metrics serves them to the scraper:
requests and errors per endpoint, transactions and volume per currency, store and kind, each
step criterion's status; and the Grafana dashboard in docs/ queries only what is served."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from rest_framework.test import APIClient

from domain.ids import WalletKey
from flags.phases import Phase
from migration.routing import ReadRetry
from tests.migration import gates
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from tests.migration.test_metrics_and_commands import scrape
from tests.migration.test_mirror import plug
from tests.migration.test_reads import balance_url, post_credit, read_balance

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def sample(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist yet (a counter never incremented)."""
    return next((v for found, v in samples.get(name, []) if found == labels), 0.0)


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def post_debit(api: APIClient, key: WalletKey, amount: str, reference_id: str) -> Any:
    return api.post(
        f"{balance_url(key)}/debits",
        {"reference_id": reference_id, "amount": amount},
        format="json",
    )


def void(api: APIClient, transaction_id: str) -> Any:
    return api.post(
        f"/api/transactions/{transaction_id}/void", {"reason": "customer asked"}, format="json"
    )


# --- requests and errors per endpoint ---------------------------------------------------------


def test_requests_are_counted_by_route_name_and_status_never_by_their_path(
    stores: Stores, api: APIClient
) -> None:
    first, second = new_key(), new_key()
    post_credit(api, first, "1.00")
    post_credit(api, second, "1.00")
    before = scrape()

    read_balance(api, first)
    read_balance(api, second)
    assert api.get("/api/no/such/route").status_code == 404

    after = scrape()
    labels = {"endpoint": "wallet-balance", "method": "GET", "status": "200"}
    assert grown(before, after, "wallet_http_requests_total", **labels) == 2
    unmatched = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    assert grown(before, after, "wallet_http_requests_total", **unmatched) == 1
    assert grown(before, after, "wallet_api_errors_total", endpoint="unmatched", code="not_found")
    endpoints = {labels["endpoint"] for labels, _ in after["wallet_http_requests_total"]}
    assert not any(first.client_id in endpoint for endpoint in endpoints)
    timed = {"endpoint": "wallet-balance", "method": "GET"}
    assert grown(before, after, "wallet_http_request_duration_seconds_count", **timed) == 2


def test_api_refusals_are_counted_by_endpoint_and_error_code(
    stores: Stores, api: APIClient
) -> None:
    key = new_key()
    post_credit(api, key, "5.00")
    before = scrape()

    assert post_debit(api, key, "9.00", tx()).status_code == 422

    after = scrape()
    refused = {"endpoint": "wallet-debits", "code": "insufficient_funds"}
    assert grown(before, after, "wallet_api_errors_total", **refused) == 1
    status = {"endpoint": "wallet-debits", "method": "POST", "status": "422"}
    assert grown(before, after, "wallet_http_requests_total", **status) == 1


# --- transactions and volume per currency, store and kind ------------------------------------


def test_transactions_and_volume_are_counted_per_currency_store_and_kind_in_minor_units(
    stores: Stores, api: APIClient
) -> None:
    enter_phase(Phase.DUAL_WRITE)  # MongoDB takes each write, the mirror gives it TigerBeetle
    usd = new_key()
    jpy = WalletKey(usd.client_id, "JPN", "JPY")
    credit_id, debit_id = tx(), tx()
    before = scrape()

    credit = {"transaction_id": credit_id, "amount": "12.34"}
    assert api.post(f"{balance_url(usd)}/credits", credit, format="json").status_code == 201
    assert api.post(f"{balance_url(usd)}/credits", credit, format="json").status_code == 200
    assert post_credit(api, jpy, "500").status_code == 201
    assert post_debit(api, usd, "2.30", debit_id).status_code == 201
    assert void(api, debit_id).status_code == 200

    after = scrape()
    expected = {
        ("credit", "USD"): 1234,  # once: the second post replayed the first
        ("credit", "JPY"): 500,
        ("debit", "USD"): 230,
        ("void_debit", "USD"): 230,
    }
    for store in ("mongo", "tigerbeetle"):
        for (kind, currency), amount_minor in expected.items():
            labels = {"store": store, "kind": kind, "currency": currency}
            assert grown(before, after, "wallet_transactions_total", **labels) == 1, labels
            volume = grown(before, after, "wallet_transaction_amount_minor_total", **labels)
            assert volume == amount_minor, labels


def test_phase_four_writes_are_counted_on_tigerbeetle_alone(stores: Stores, api: APIClient) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key("EUR")
    before = scrape()

    assert post_credit(api, key, "3.00").status_code == 201

    after = scrape()
    for store, amount_minor in (("tigerbeetle", 300), ("mongo", 0)):
        labels = {"store": store, "kind": "credit", "currency": "EUR"}
        assert grown(before, after, "wallet_transaction_amount_minor_total", **labels) == (
            amount_minor
        )


# --- each step criterion's status --------------------------------------------------------------


def criterion(samples: Samples, name: str, which: str) -> float:
    return sample(samples, f"wallet_migration_criterion_{name}", criterion=which)


def test_each_step_criterion_is_a_gauge_met_not_met_or_without_data(stores: Stores) -> None:
    fresh = scrape()
    for which in ("reconciliation_match_rate", "read_latency", "fallback_rate", "writes_lost"):
        assert criterion(fresh, "status", which) == -1, which  # nothing recorded yet

    gates.reconciled(range(7))
    gates.shadow_timed(range(7), tb_us=300, mongo_us=1000)
    held = scrape()
    assert criterion(held, "status", "reconciliation_match_rate") == 1
    assert criterion(held, "held_days", "reconciliation_match_rate") == 7
    assert criterion(held, "required_days", "reconciliation_match_rate") == 7
    assert criterion(held, "status", "read_latency") == 1

    gates.reconciled([0], mismatched=1)  # today: 19 of 20 wallets matched
    broken = scrape()
    assert criterion(broken, "status", "reconciliation_match_rate") == 0
    assert criterion(broken, "held_days", "reconciliation_match_rate") == 0


def test_the_phase_and_its_shares_are_gauges(stores: Stores) -> None:
    enter_phase(Phase.READ_CUTOVER, rollout_percent=25)

    samples = scrape()

    assert sample(samples, "wallet_migration_phase") == 3
    assert sample(samples, "wallet_migration_share_percent", share="read_rollout") == 25
    assert sample(samples, "wallet_migration_share_percent", share="shadow_read") == 0
    assert sample(samples, "wallet_migration_share_percent", share="dual_write") == 100


# --- the Grafana dashboard ----------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_WORDS |= {"and", "or", "unless", "offset"}


def dashboard_queries() -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query selects: what is left once strings, label matchers,
    ranges, grouping clauses, functions, keywords and numbers are taken out."""
    query = re.sub(r'"(?:[^"\\]|\\.)*"', "", query)
    query = re.sub(r"\{[^}]*\}", "", query)
    query = re.sub(r"\[[^\]]*\]", "", query)
    query = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", query)
    query = re.sub(r"\b\d[\w.]*", "", query)  # numbers and durations (0.95, 5m)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", query):
        followed_by = query[match.end() :].lstrip()[:1]
        if followed_by == "(" or match.group() in _PROMQL_WORDS:
            continue  # a function or an operator
        names.add(match.group())
    return names


def some_of_every_kind_of_traffic(stores: Stores, api: APIClient) -> None:
    """Writes, refusals and reads through every phase a metric is made in, a mirror run and a
    reconciliation, so each metric has samples to serve."""
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    debit_id = tx()
    post_credit(api, key, "10.00")
    post_debit(api, key, "1.00", debit_id)
    post_debit(api, key, "99.00", tx())  # refused: insufficient_funds
    void(api, debit_id)
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    read_balance(api, key)
    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    read_balance(api, key)
    stores.phased.read_retry = ReadRetry(retries=3, base_s=0.001)
    backend = plug(stores)
    backend.down = True
    read_balance(api, key)  # retried, then MongoDB: a fallback
    backend.down = False
    call_command("reconcile", stdout=StringIO())


def test_every_metric_the_grafana_dashboard_queries_is_exported(
    stores: Stores, api: APIClient
) -> None:
    some_of_every_kind_of_traffic(stores, api)

    exported = set(scrape())
    queried: dict[str, set[str]] = {query: metric_names(query) for query in dashboard_queries()}

    assert len(queried) >= 30
    assert all(names for names in queried.values()), "every query selects a metric"
    missing = {query: names - exported for query, names in queried.items() if names - exported}
    assert not missing, missing
