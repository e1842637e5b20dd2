"""The dashboard's figures computed from what was recorded (database rows, the outbox) and
from the metrics: the seed's success criteria, and the latency of each store. The criterion
the next step waits for, and the figures it is computed from, are `migration.criteria`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from prometheus_client import CollectorRegistry, multiprocess

from backoffice.notices import Notice, outbox_notice
from domain import errors
from ledger import metrics
from migration.criteria import (
    FALLBACK_RATE_TARGET,
    LATENCY_RATIO_TARGET,
    MATCH_RATE_TARGET,
    OutboxDepth,
    fallback_rate,
    outbox_depth_of,
    reconciliation_match_rate,
    shadow_figures,
    writes_lost,
)
from migration.runtime import process_runtime


@dataclass(frozen=True)
class Criterion:
    """One of the seed's success criteria: met (True/False), or None when there is no data."""

    name: str
    target: str
    value: str
    met: bool | None


def outbox_depth() -> OutboxDepth | None:
    """Entries waiting for the mirror by state, and the oldest pending one's age (None when
    MongoDB does not answer)."""
    return outbox_depth_of(process_runtime().outbox)


def outbox_status() -> tuple[OutboxDepth | None, Notice]:
    """The outbox's depth and the notice it calls for (a parked entry is an error saying
    what refused it)."""
    depth = outbox_depth()
    parked = []
    if depth is not None and depth.parked:
        try:
            parked = process_runtime().outbox.parked(limit=20)
        except errors.StoreUnavailable:
            parked = []
    return depth, outbox_notice(depth, parked=parked)


def success_criteria(days: int = 7) -> list[Criterion]:
    reconciled, checked, set_aside = reconciliation_match_rate(days)
    aside = f", {set_aside} acknowledged legacy wallets set aside" if set_aside else ""
    shadow = shadow_figures(days)
    rate = shadow.match_rate
    criteria = [
        Criterion(
            f"Balance match rate, reconciliation ({days} days)",
            f"> {MATCH_RATE_TARGET:.2%}",
            f"{reconciled:.4%} of {checked}{aside}" if reconciled is not None else "no data",
            None if reconciled is None else reconciled > MATCH_RATE_TARGET,
        ),
        Criterion(
            f"Balance match rate, shadow reads ({days} days)",
            f"> {MATCH_RATE_TARGET:.2%}",
            f"{rate:.4%} of {shadow.matched + shadow.mismatched}"
            + (
                f", {shadow.set_aside} of acknowledged legacy wallets set aside"
                if shadow.set_aside
                else ""
            )
            if rate is not None
            else "no data",
            None if rate is None else rate > MATCH_RATE_TARGET,
        ),
    ]
    from_metrics = read_latency_ratio()
    if from_metrics is not None:
        tb_ms, mongo_ms, ratio_of_means = from_metrics
        criteria.append(
            Criterion(
                "TigerBeetle latency vs MongoDB (balance reads, /metrics)",
                f"< {LATENCY_RATIO_TARGET:.0%}",
                f"{ratio_of_means:.0%} ({tb_ms:.2f} vs {mongo_ms:.2f} ms)",
                Decimal(str(ratio_of_means)) < LATENCY_RATIO_TARGET,
            )
        )
    elif shadow.mongo_latency_us and shadow.tb_latency_us:
        ratio = Decimal(shadow.tb_latency_us) / Decimal(shadow.mongo_latency_us)
        criteria.append(
            Criterion(
                "TigerBeetle latency vs MongoDB",
                f"< {LATENCY_RATIO_TARGET:.0%}",
                f"{ratio:.0%} ({shadow.tb_latency_us:.0f} vs {shadow.mongo_latency_us:.0f} µs)",
                ratio < LATENCY_RATIO_TARGET,
            )
        )
    else:
        criteria.append(
            Criterion(
                "TigerBeetle latency vs MongoDB", f"< {LATENCY_RATIO_TARGET:.0%}", "no data", None
            )
        )
    fallback = fallback_rate(days)
    criteria.append(
        Criterion(
            f"Fallback rate ({days} days)",
            f"< {FALLBACK_RATE_TARGET:.1%}",
            f"{fallback:.3%}" if fallback is not None else "no data",
            None if fallback is None else fallback < FALLBACK_RATE_TARGET,
        )
    )
    lost, detail = writes_lost(outbox_depth())
    criteria.append(
        Criterion(
            "Writes lost",
            "0",
            detail,
            None if lost is None else lost == 0,
        )
    )
    return criteria


# --- latency per store, from the metrics ---------------------------------------------------


@dataclass(frozen=True)
class OperationLatency:
    """One operation on one store, from the `wallet_operation_seconds` histogram."""

    operation: str
    store: str
    count: int
    mean_ms: float
    p95_ms_at_most: float | None  # the histogram bucket bound the 95th percentile falls in


def operation_latencies() -> list[OperationLatency]:
    """What /metrics records of every operation per store: all processes when
    PROMETHEUS_MULTIPROC_DIR is set (gunicorn, prefork), else this process, since start."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        families = [m for m in registry.collect() if m.name == "wallet_operation_seconds"]
    else:
        families = list(metrics.OPERATION_SECONDS.collect())
    sums: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], float] = {}
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for family in families:
        for sample in family.samples:
            series = (sample.labels.get("operation", ""), sample.labels.get("store", ""))
            if sample.name.endswith("_sum"):
                sums[series] = sums.get(series, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                counts[series] = counts.get(series, 0.0) + sample.value
            elif sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets.setdefault(series, []).append((bound, sample.value))
    latencies = []
    for series, count in sorted(counts.items()):
        if not count:
            continue
        p95 = None
        for bound, cumulative in sorted(buckets.get(series, [])):
            if cumulative >= 0.95 * count:
                p95 = None if bound == float("inf") else bound * 1000
                break
        latencies.append(
            OperationLatency(
                series[0], series[1], int(count), sums.get(series, 0.0) / count * 1000, p95
            )
        )
    return latencies


def read_latency_ratio() -> tuple[float, float, float] | None:
    """(TigerBeetle mean ms, MongoDB mean ms, ratio) of balance reads, from the metrics."""
    reads = {
        latency.store: latency
        for latency in operation_latencies()
        if latency.operation == "get_balance"
    }
    if "tigerbeetle" not in reads or "mongo" not in reads or not reads["mongo"].mean_ms:
        return None
    tb, mongo = reads["tigerbeetle"].mean_ms, reads["mongo"].mean_ms
    return tb, mongo, tb / mongo
