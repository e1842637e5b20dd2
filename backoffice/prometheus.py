"""GET /metrics: Prometheus exposition of the wallet service and the migration.

Process-local metrics (latency histograms, fallbacks, breaker) come from `ledger.metrics`;
figures every process should agree on (outbox depth and lag, shadow match rate, the last
reconciliation) are read from MongoDB and the database at scrape time by a collector.
With PROMETHEUS_MULTIPROC_DIR set (gunicorn, prefork workers) all processes are aggregated.

A scrape shows internals and runs database and MongoDB queries, so it answers only the
Prometheus scraper: `Authorization: Bearer <METRICS_BEARER_TOKEN>`; unset, it answers no one.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from domain import errors
from domain.errors import error_body
from migration import criteria
from migration.runtime import process_runtime

log = logging.getLogger(__name__)


class MigrationCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        depth_metric = GaugeMetricFamily(
            "wallet_outbox_waiting_entries",
            "Outbox entries TigerBeetle does not hold yet, by state.",
            labels=["state"],
        )
        lag_metric = GaugeMetricFamily(
            "wallet_mirror_lag_oldest_seconds", "Age of the oldest pending outbox entry."
        )
        try:
            depth = process_runtime().outbox.depth()
            for state, count in depth.waiting().items():
                depth_metric.add_metric([state], count)
            lag_metric.add_metric([], depth.oldest_pending_age_s)
            yield depth_metric
            yield lag_metric
        except errors.StoreUnavailable as exc:
            log.warning("metrics: outbox depth unavailable: %s", exc)
        shadow = criteria.shadow_figures(days=1)
        rate = GaugeMetricFamily(
            "wallet_shadow_match_ratio", "Shadow reads that matched, over the last 24 hours."
        )
        if shadow.match_rate is not None:
            rate.add_metric([], float(shadow.match_rate))
        yield rate
        run = criteria.last_reconciliation()
        if run is not None:
            wallets = GaugeMetricFamily(
                "wallet_last_reconciliation_wallets",
                "Wallets in the last finished reconciliation run, by result.",
                labels=["result"],
            )
            for result in ("checked", "matched", "mismatched", "awaiting_backfill"):
                wallets.add_metric([result], getattr(run, result))
            yield wallets
            finished = GaugeMetricFamily(
                "wallet_last_reconciliation_timestamp_seconds",
                "When the last reconciliation run finished (Unix time).",
            )
            finished.add_metric([], run.finished_at.timestamp() if run.finished_at else 0)
            yield finished


_collector = MigrationCollector()


def scraper_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request carries the scraper's bearer token, else the refusal."""
    expected = settings.METRICS_BEARER_TOKEN
    if not expected:
        return JsonResponse(
            error_body(
                "permission_denied",
                message="Metrics are off: METRICS_BEARER_TOKEN is not set.",
            ),
            status=403,
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected.encode()):
        return None
    response = JsonResponse(
        error_body(
            "not_authenticated",
            message="Give the scraper's token: Authorization: Bearer <token>.",
        ),
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = scraper_refusal(request)
    if refusal is not None:
        return refusal
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    registry.register(_collector)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class _ProcessMetrics(Collector):
    """This process's own metrics (the default registry), inside a per-request registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
