"""/metrics in Prometheus format, and the operators' commands for the mirror and backfill."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from flags.phases import Phase
from migration.outbox import MirrorState
from migration.routing import ReadRetry
from tests.migration.conftest import Stores, enter_phase, legacy_wallet, new_key, tx

SCRAPER_TOKEN = "scraper-token-for-tests"


def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    with override_settings(METRICS_BEARER_TOKEN=SCRAPER_TOKEN):
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SCRAPER_TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            families.setdefault(sample.name, []).append((sample.labels, sample.value))
    return families


def value(families: dict, name: str, **labels: str) -> float:
    return next(v for sample_labels, v in families[name] if sample_labels == labels)


def test_metrics_show_outbox_depth_by_state(stores: Stores) -> None:
    stores.phased.add_credit(new_key(), 100, tx())  # phase 0: stays pending
    metrics = scrape()
    assert value(metrics, "wallet_outbox_waiting_entries", state="pending") == 1
    assert value(metrics, "wallet_outbox_waiting_entries", state="parked") == 0
    assert value(metrics, "wallet_outbox_waiting_entries", state="outside_share") == 0


def test_metrics_show_per_store_latency_histograms(stores: Stores) -> None:
    enter_phase(Phase.DUAL_WRITE)
    stores.phased.add_credit(new_key(), 100, tx())
    metrics = scrape()
    count = value(metrics, "wallet_operation_seconds_count", operation="add_credit", store="mongo")
    assert count >= 1


def test_metrics_show_the_shadow_match_rate(stores: Stores) -> None:
    enter_phase(Phase.SHADOW_READ, shadow_percent=100)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    stores.phased.get_balance(key)
    assert value(scrape(), "wallet_shadow_match_ratio") == 1.0


def test_metrics_show_the_last_reconciliation(stores: Stores) -> None:
    call_command("reconcile", stdout=StringIO())
    assert value(scrape(), "wallet_last_reconciliation_wallets", result="mismatched") == 0


def test_the_mirror_command_drains_and_reports_the_outbox(stores: Stores) -> None:
    stores.phased.add_credit(new_key(), 100, tx())
    out = StringIO()
    call_command("mirror", "--drain", stdout=out)
    assert "applied 1" in out.getvalue()
    assert "outbox: 0 pending, 0 parked" in out.getvalue()


def test_the_mirror_command_requeues_parked_entries(stores: Stores) -> None:
    stores.phased.add_credit(new_key(), 100, tx())
    stores.mongo.database.log().update_many({}, {"$set": {"mirror_state": MirrorState.PARKED}})
    out = StringIO()
    call_command("mirror", "--requeue-parked", "--drain", stdout=out)
    assert "requeued 1 parked entries" in out.getvalue() and "applied 1" in out.getvalue()


def test_the_backfill_command_imports_and_reports(stores: Stores) -> None:
    legacy_wallet(stores, new_key(), credit_minor=10, debit_minor=5)
    out = StringIO()
    call_command("backfill", "--no-progress", stdout=out)
    assert "scanned 1, imported 1" in out.getvalue()


def test_the_backfill_command_refuses_a_page_larger_than_a_batch(stores: Stores) -> None:
    with pytest.raises(CommandError, match="between 1 and 8189"):
        call_command("backfill", "--page-size", "9000", stdout=StringIO())


def test_the_backfill_task_imports_and_reports(stores: Stores) -> None:
    from migration.tasks import backfill

    legacy_wallet(stores, new_key(), credit_minor=10, debit_minor=5)
    result = backfill.delay(page_size=100).get()
    assert (result["scanned"], result["imported"], result["failed"]) == (1, 1, [])


def test_metrics_show_the_read_breaker_opening(stores: Stores, settings: Any) -> None:
    from tests.migration.test_mirror import plug

    enter_phase(Phase.READ_CUTOVER, rollout_percent=100)
    stores.phased.read_retry = ReadRetry(retries=3, base_s=0.001)
    key = new_key()
    stores.phased.add_credit(key, 100, tx())
    plug(stores).down = True
    before = scrape()
    assert value(before, "wallet_read_breaker_open") == 0
    for _ in range(settings.READ_BREAKER_FAILURES):
        stores.phased.get_balance(key)
    after = scrape()
    assert value(after, "wallet_read_breaker_open") == 1
    fallbacks = [
        sum(v for labels, v in m.get("wallet_read_fallbacks_total", [])) for m in (before, after)
    ]
    assert fallbacks[1] - fallbacks[0] == settings.READ_BREAKER_FAILURES
    retries = [value(m, "wallet_read_retries_total") for m in (before, after)]
    assert retries[1] - retries[0] == 3 * settings.READ_BREAKER_FAILURES


def test_metrics_show_open_alerts_by_kind(stores: Stores) -> None:
    from migration import alerts
    from migration.models import Alert

    alerts.raise_alert(Alert.Kind.SHADOW_MISMATCH, case="a wallet", figures={})
    alerts.raise_alert(Alert.Kind.SHADOW_MISMATCH, case="a wallet", figures={})  # the same case
    metrics = scrape()
    assert value(metrics, "wallet_open_alerts", kind="shadow_mismatch") == 1
    assert value(metrics, "wallet_open_alerts", kind="guard_step_back") == 0
