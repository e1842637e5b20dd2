"""GET /metrics: Prometheus exposition of the wallet service and the migration.

Process-local metrics (latency histograms, transactions and volume per currency and store,
fallbacks, retries, breaker) come from `ledger.metrics`, requests and errors per endpoint from
`wallet_site.request_metrics`; figures every process should agree on (outbox depth and lag,
shadow match rate, the last reconciliation, open alerts, the phase, each step criterion's
status) are read from MongoDB and the database at scrape time by a collector.
docs/grafana-dashboard.json charts them.
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
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from domain.errors import error_body
from flags.phases import MigrationState, current_state
from migration import criteria
from migration.criteria import StepCriterion
from migration.models import Alert
from migration.outbox import OutboxDepth
from migration.runtime import process_runtime

log = logging.getLogger(__name__)


class MigrationCollector(Collector):
    """Figures every process agrees on, read at scrape time: the outbox, the shadow match
    rate, the last reconciliation, open alerts, the phase and each step criterion's status."""

    def collect(self) -> Iterator[Metric]:
        depth = criteria.outbox_depth_of(process_runtime().outbox)
        if depth is None:
            log.warning("metrics: outbox depth unavailable: MongoDB does not answer")
        else:
            yield from _outbox_metrics(depth)
        yield from _shadow_metrics()
        yield from _reconciliation_metrics()
        yield from _alert_metrics()
        state = current_state()
        yield from _phase_metrics(state)
        yield from _criterion_metrics(state, depth)


def _outbox_metrics(depth: OutboxDepth) -> Iterator[Metric]:
    depth_metric = GaugeMetricFamily(
        "wallet_outbox_waiting_entries",
        "Outbox entries TigerBeetle does not hold yet, by state.",
        labels=["state"],
    )
    for state, count in depth.waiting().items():
        depth_metric.add_metric([state], count)
    # Not waiting for the mirror (the dual-write share decides when they go to it): its own.
    depth_metric.add_metric(["outside_share"], depth.outside_share)
    yield depth_metric
    lag_metric = GaugeMetricFamily(
        "wallet_mirror_lag_oldest_seconds", "Age of the oldest pending outbox entry."
    )
    lag_metric.add_metric([], depth.oldest_pending_age_s)
    yield lag_metric


def _shadow_metrics() -> Iterator[Metric]:
    shadow = criteria.shadow_figures(days=1)
    rate = GaugeMetricFamily(
        "wallet_shadow_match_ratio", "Shadow reads that matched, over the last 24 hours."
    )
    if shadow.match_rate is not None:
        rate.add_metric([], float(shadow.match_rate))
    yield rate


def _reconciliation_metrics() -> Iterator[Metric]:
    run = criteria.last_reconciliation()
    if run is None:
        return
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


def _alert_metrics() -> Iterator[Metric]:
    """Open alerts by kind (every kind, 0 when none)."""
    open_alerts = GaugeMetricFamily(
        "wallet_open_alerts",
        "Alerts not resolved yet, by kind (one per case: a wallet, a threshold, a step back).",
        labels=["kind"],
    )
    counts = dict(
        Alert.objects.filter(resolved_at__isnull=True)
        .values("kind")
        .annotate(total=Count("id"))
        .values_list("kind", "total")
    )
    for kind in Alert.Kind.values:
        open_alerts.add_metric([kind], counts.get(kind, 0))
    yield open_alerts


def _phase_metrics(state: MigrationState) -> Iterator[Metric]:
    phase = GaugeMetricFamily(
        "wallet_migration_phase",
        "The migration phase: 0 legacy, 1 dual write, 2 shadow read, 3 read cutover, "
        "4 TigerBeetle only.",
    )
    phase.add_metric([], int(state.phase))
    yield phase
    shares = GaugeMetricFamily(
        "wallet_migration_share_percent",
        "The migration's shares: shadow_read (percent of reads compared in phase 2), "
        "read_rollout (percent of clients reading from TigerBeetle in phase 3), dual_write "
        "(percent of clients whose writes are mirrored in phases 1-3).",
        labels=["share"],
    )
    shares.add_metric(["shadow_read"], float(state.shadow_read_percent))
    shares.add_metric(["read_rollout"], float(state.read_rollout_percent))
    shares.add_metric(["dual_write"], float(state.dual_write_percent))
    yield shares


# wallet_migration_criterion_status: a criterion met, not met, or without any data yet.
CRITERION_MET, CRITERION_NOT_MET, CRITERION_NO_DATA = 1, 0, -1


def criterion_status_value(criterion: StepCriterion) -> int:
    if criterion.met is None:
        return CRITERION_NO_DATA
    return CRITERION_MET if criterion.met else CRITERION_NOT_MET


def _criterion_metrics(state: MigrationState, depth: OutboxDepth | None) -> Iterator[Metric]:
    status = GaugeMetricFamily(
        "wallet_migration_criterion_status",
        "Each phase step's criterion (migration/criteria.py): 1 met, 0 not met, -1 no data yet.",
        labels=["criterion"],
    )
    held = GaugeMetricFamily(
        "wallet_migration_criterion_held_days",
        "Consecutive days, up to the latest day with data, on which the criterion held.",
        labels=["criterion"],
    )
    required = GaugeMetricFamily(
        "wallet_migration_criterion_required_days",
        "Consecutive days the criterion must hold (0: it holds or not, now).",
        labels=["criterion"],
    )
    every = criteria.every_step_criterion(
        outbox_depth=lambda: depth, required_days=settings.MIGRATION_CRITERION_DAYS
    )
    for name, criterion in every.items():
        status.add_metric([name], criterion_status_value(criterion))
        held.add_metric([name], criterion.held_days)
        required.add_metric([name], criterion.required_days)
    yield status
    yield held
    yield required


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
