"""The migration's figures computed from what was recorded (database rows, the outbox), not
from one process's memory: the success criteria of the seed, and Prometheus gauges."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from prometheus_client import CollectorRegistry, multiprocess

from domain import errors
from flags.models import Milestone
from flags.phases import MigrationState, Phase
from ledger import metrics
from migration.models import (
    ReadRouteCount,
    ReconciliationMismatch,
    ReconciliationRun,
    ShadowComparison,
)
from migration.outbox import OutboxDepth
from wallet_site.wiring import mongo_outbox


@dataclass(frozen=True)
class ShadowFigures:
    compared: int
    matched: int
    mismatched: int
    mongo_latency_us: float | None
    tb_latency_us: float | None

    @property
    def match_rate(self) -> Decimal | None:
        """Matched / (matched + mismatched); None before any comparison."""
        decided = self.matched + self.mismatched
        if not decided:
            return None
        return Decimal(self.matched) / Decimal(decided)


def shadow_figures(days: int = 7) -> ShadowFigures:
    since = timezone.now() - timedelta(days=days)
    rows = ShadowComparison.objects.filter(compared_at__gte=since)
    figures = rows.aggregate(
        compared=Count("id"),
        matched=Count("id", filter=Q(outcome=ShadowComparison.Outcome.MATCH)),
        mismatched=Count("id", filter=Q(outcome=ShadowComparison.Outcome.MISMATCH)),
        mongo_latency_us=Avg("mongo_latency_us"),
        tb_latency_us=Avg("tb_latency_us", filter=Q(tb_latency_us__isnull=False)),
    )
    return ShadowFigures(**figures)


def read_routes(days: int = 7) -> dict[str, int]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        ReadRouteCount.objects.filter(hour__gte=since).values("route").annotate(total=Sum("count"))
    )
    return {row["route"]: int(row["total"]) for row in rows}


def fallback_rate(days: int = 7) -> Decimal | None:
    """Fallbacks / reads meant for TigerBeetle (served by it, or by MongoDB after a failure)."""
    routes = read_routes(days)
    meant_for_tb = routes.get("tigerbeetle", 0) + routes.get("fallback", 0)
    if not meant_for_tb:
        return None
    return Decimal(routes.get("fallback", 0)) / Decimal(meant_for_tb)


def last_reconciliation() -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(finished_at__isnull=False).first()


@dataclass(frozen=True)
class Criterion:
    """One of the seed's success criteria: met (True/False), or None when there is no data."""

    name: str
    target: str
    value: str
    met: bool | None


MATCH_RATE_TARGET = Decimal("0.9999")
LATENCY_RATIO_TARGET = Decimal("0.5")
FALLBACK_RATE_TARGET = Decimal("0.001")


def outbox_depth() -> OutboxDepth | None:
    """Entries waiting for the mirror by state, and the oldest pending one's age (None when
    MongoDB does not answer)."""
    try:
        return mongo_outbox().depth()
    except errors.StoreUnavailable:
        return None


def writes_lost() -> tuple[int | None, str]:
    """Writes MongoDB acknowledged that TigerBeetle does not hold: parked outbox entries
    plus wallets whose balances differed in the last reconciliation."""
    depth = outbox_depth()
    if depth is None:
        return None, "MongoDB unavailable: the outbox cannot be read"
    run = last_reconciliation()
    mismatched, legacy = lost_write_mismatches(run)
    detail = (
        f"{depth.parked} parked outbox entries, {mismatched} wallets mismatched in the last run"
    )
    if legacy:
        detail += f" (not counted: {legacy} legacy wallets inconsistent in MongoDB itself)"
    return depth.parked + mismatched, detail


def success_criteria(days: int = 7) -> list[Criterion]:
    shadow = shadow_figures(days)
    rate = shadow.match_rate
    criteria = [
        Criterion(
            f"Balance match rate ({days} days)",
            f">= {MATCH_RATE_TARGET:.2%}",
            f"{rate:.4%} of {shadow.matched + shadow.mismatched}"
            if rate is not None
            else "no data",
            None if rate is None else rate >= MATCH_RATE_TARGET,
        )
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
    lost, detail = writes_lost()
    criteria.append(
        Criterion(
            "Writes lost",
            "0",
            detail,
            None if lost is None else lost == 0,
        )
    )
    return criteria


class DailyShadowFigures(TypedDict):
    """One day of shadow comparisons (latencies None on a day with none)."""

    day: date
    matched: int
    mismatched: int
    mongo_latency_us: float | None
    tb_latency_us: float | None


def daily_shadow_figures(days: int = 14) -> list[DailyShadowFigures]:
    """Per day: match rate and average read latency of each store (for the charts)."""
    since = timezone.now() - timedelta(days=days)
    return list(
        ShadowComparison.objects.filter(compared_at__gte=since)
        .annotate(day=TruncDate("compared_at"))
        .values("day")
        .annotate(
            matched=Count("id", filter=Q(outcome=ShadowComparison.Outcome.MATCH)),
            mismatched=Count("id", filter=Q(outcome=ShadowComparison.Outcome.MISMATCH)),
            mongo_latency_us=Avg("mongo_latency_us"),
            tb_latency_us=Avg("tb_latency_us"),
        )
        .order_by("day")
    )


# --- the criterion that gates the next phase ----------------------------------------------

CONSECUTIVE_DAYS = 7


@dataclass(frozen=True)
class DayResult:
    """One day of a gating criterion: met (True/False), or None without data that day."""

    day: date
    met: bool | None
    value: str


@dataclass(frozen=True)
class Blocker:
    """What keeps a criterion from holding, with where to see the cases ("" when no page)."""

    text: str
    url: str = ""
    link_text: str = "See the cases"


@dataclass
class Gate:
    """For the current phase: the criterion the next step waits for, and how it stands."""

    phase: Phase
    next_step: str
    criterion: str
    met: bool | None
    now: str
    days: list[DayResult] = field(default_factory=list)
    data_since: datetime | None = None
    blockers: list[Blocker] = field(default_factory=list)
    required_days: int = CONSECUTIVE_DAYS

    @property
    def held_days(self) -> int:
        """Consecutive days, ending with the latest day that has data, on which it held."""
        held = 0
        days = list(self.days)
        if days and days[-1].met is None:  # today, before any data
            days.pop()
        for day in reversed(days):
            if day.met is not True:
                break
            held += 1
        return held

    @property
    def held_since(self) -> date | None:
        held = self.held_days
        if not held:
            return None
        days = [day for day in self.days if day.met is not None] or self.days
        return days[-held].day


def _last_days(count: int) -> list[date]:
    today = timezone.now().date()
    return [today - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


def daily_match_rates(days: int = CONSECUTIVE_DAYS) -> list[DayResult]:
    by_day = {row["day"]: row for row in daily_shadow_figures(days)}
    results = []
    for day in _last_days(days):
        row = by_day.get(day)
        decided = row["matched"] + row["mismatched"] if row else 0
        if not decided:
            results.append(DayResult(day, None, "no comparisons"))
            continue
        assert row is not None  # decided > 0
        rate = Decimal(row["matched"]) / Decimal(decided)
        results.append(DayResult(day, rate >= MATCH_RATE_TARGET, f"{rate:.4%} of {decided}"))
    return results


def daily_fallback_rates(days: int = CONSECUTIVE_DAYS) -> list[DayResult]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        ReadRouteCount.objects.filter(hour__gte=since)
        .annotate(day=TruncDate("hour"))
        .values("day", "route")
        .annotate(total=Sum("count"))
    )
    counts: dict[date, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["day"], {})[row["route"]] = int(row["total"])
    results = []
    for day in _last_days(days):
        routes = counts.get(day, {})
        meant = routes.get("tigerbeetle", 0) + routes.get("fallback", 0)
        if not meant:
            results.append(DayResult(day, None, "no TigerBeetle reads"))
            continue
        rate = Decimal(routes.get("fallback", 0)) / Decimal(meant)
        results.append(DayResult(day, rate < FALLBACK_RATE_TARGET, f"{rate:.3%} of {meant}"))
    return results


def is_legacy_inconsistency(mismatch: ReconciliationMismatch) -> bool:
    """A legacy wallet whose own MongoDB fields disagree (credit != total received - spent):
    imported as it was, a known data problem, not a write the migration lost."""
    fields = (
        mismatch.mongo_credit_minor,
        mismatch.mongo_debit_minor,
        mismatch.mongo_historical_credit_minor,
    )
    if mismatch.kind != ReconciliationMismatch.Kind.BALANCE or None in fields:
        return False
    credit, debit, historical = fields
    return credit != historical - debit  # type: ignore[operator]


def lost_write_mismatches(run: ReconciliationRun | None) -> tuple[int, int]:
    """(mismatches that may be lost writes, legacy inconsistencies) of a run, leaving out
    those a re-check has since resolved."""
    if run is None:
        return 0, 0
    lost = legacy = 0
    for mismatch in run.mismatches.filter(resolved_at__isnull=True):
        if is_legacy_inconsistency(mismatch):
            legacy += 1
        else:
            lost += 1
    return lost, legacy


def daily_writes_lost(days: int = CONSECUTIVE_DAYS) -> list[DayResult]:
    """Per day: held when every reconciliation run that day found no lost write."""
    since = timezone.now() - timedelta(days=days)
    runs = ReconciliationRun.objects.filter(finished_at__isnull=False, started_at__gte=since)
    worst: dict[date, int] = {}
    for run in runs:
        lost, _ = lost_write_mismatches(run)
        day = run.started_at.date()
        worst[day] = max(worst.get(day, 0), lost)
    results = []
    for day in _last_days(days):
        if day not in worst:
            results.append(DayResult(day, None, "no reconciliation run"))
        else:
            results.append(DayResult(day, worst[day] == 0, f"{worst[day]} wallets"))
    return results


def current_gate(state: MigrationState, urls: dict[str, str]) -> Gate:
    """The criterion that gates the step after the current phase. `urls` are the admin
    pages that list the cases (by name: shadow_mismatches, mismatches, milestones, runs)."""
    phase = state.phase
    if phase == Phase.LEGACY:
        return _backfill_gate(phase, urls)
    if phase == Phase.DUAL_WRITE:
        gate = _writes_lost_gate(phase, "phase 2 - shadow read", urls)
        return gate
    if phase == Phase.SHADOW_READ:
        return _match_rate_gate(phase, urls)
    if phase == Phase.READ_CUTOVER:
        return _fallback_gate(phase, state, urls)
    return _writes_lost_gate(phase, "staying on TigerBeetle only", urls)


def _held_long_enough(gate: Gate) -> bool | None:
    """Met when it held on each of the required consecutive days; None without any data."""
    if all(day.met is None for day in gate.days):
        return None
    return gate.held_days >= gate.required_days


def _backfill_gate(phase: Phase, urls: dict[str, str]) -> Gate:
    done = Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).first()
    gate = Gate(
        phase,
        "phase 1 - dual write",
        "The backfill has imported every legacy wallet into TigerBeetle (run it before dual "
        "write so wallets keep their creation time; phase 4 refuses without it)",
        done is not None,
        f"completed {done.reached_at:%Y-%m-%d %H:%M}" if done else "not run yet",
        required_days=0,
    )
    if done is None:
        gate.blockers.append(
            Blocker("The backfill has not completed.", urls["milestones"], "Milestones")
        )
    return gate


def _writes_lost_gate(phase: Phase, next_step: str, urls: dict[str, str]) -> Gate:
    lost, detail = writes_lost()
    run = last_reconciliation()
    gate = Gate(
        phase,
        next_step,
        "No write lost: no parked outbox entry and no wallet whose balances differ in "
        "the last reconciliation",
        None if lost is None or (run is None and not lost) else lost == 0,
        detail if run is not None or lost else "no reconciliation has run yet",
        days=daily_writes_lost(),
        data_since=ReconciliationRun.objects.order_by("started_at")
        .values_list("started_at", flat=True)
        .first(),
        required_days=0,
    )
    depth = outbox_depth()
    if depth and depth.parked:
        gate.blockers.append(
            Blocker(f"{depth.parked} parked outbox entries (the mirror gave up on them).")
        )
    real, legacy = lost_write_mismatches(run)
    if real:
        gate.blockers.append(
            Blocker(f"{real} wallets differ in the last reconciliation.", urls["mismatches"])
        )
    if legacy:
        gate.blockers.append(
            Blocker(
                f"Not counted: {legacy} legacy wallets whose MongoDB fields disagree among "
                "themselves (imported as they were).",
                urls["mismatches"],
            )
        )
    if run is None:
        gate.blockers.append(
            Blocker("No reconciliation has run yet.", urls["runs"], "Reconciliation runs")
        )
    return gate


def _match_rate_gate(phase: Phase, urls: dict[str, str]) -> Gate:
    shadow = shadow_figures(CONSECUTIVE_DAYS)
    rate = shadow.match_rate
    gate = Gate(
        phase,
        "phase 3 - read cutover",
        f"Balance match rate >= {MATCH_RATE_TARGET:.2%} on each of {CONSECUTIVE_DAYS} "
        "consecutive days",
        None,
        f"{rate:.4%} of {shadow.matched + shadow.mismatched} over {CONSECUTIVE_DAYS} days"
        if rate is not None
        else "no comparisons yet",
        days=daily_match_rates(),
        data_since=ShadowComparison.objects.order_by("compared_at")
        .values_list("compared_at", flat=True)
        .first(),
    )
    gate.met = _held_long_enough(gate)
    if shadow.mismatched:
        gate.blockers.append(
            Blocker(
                f"{shadow.mismatched} comparisons mismatched in the last {CONSECUTIVE_DAYS} days.",
                urls["shadow_mismatches"],
            )
        )
    missing = [day for day in gate.days if day.met is None]
    if missing:
        gate.blockers.append(
            Blocker(f"{len(missing)} of the last {CONSECUTIVE_DAYS} days have no comparison.")
        )
    return gate


def _fallback_gate(phase: Phase, state: MigrationState, urls: dict[str, str]) -> Gate:
    fallback = fallback_rate(CONSECUTIVE_DAYS)
    gate = Gate(
        phase,
        "phase 4 - TigerBeetle only"
        if state.read_rollout_percent >= 100
        else "a wider read rollout, then phase 4",
        f"Fallback rate < {FALLBACK_RATE_TARGET:.1%} of TigerBeetle reads on each of "
        f"{CONSECUTIVE_DAYS} consecutive days",
        None,
        f"{fallback:.3%} over {CONSECUTIVE_DAYS} days" if fallback is not None else "no data",
        days=daily_fallback_rates(),
        data_since=ReadRouteCount.objects.order_by("hour").values_list("hour", flat=True).first(),
    )
    gate.met = _held_long_enough(gate)
    failed = [day for day in gate.days if day.met is False]
    if failed:
        gate.blockers.append(
            Blocker(f"Fallbacks above the target on {len(failed)} days (see the read routes).")
        )
    if not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists():
        gate.blockers.append(
            Blocker(
                "Phase 4 needs the backfill to have completed.", urls["milestones"], "Milestones"
            )
        )
    depth = outbox_depth()
    if depth and (depth.parked or depth.awaiting_backfill):
        gate.blockers.append(
            Blocker(
                f"Phase 4 needs an empty outbox: {depth.parked} parked, "
                f"{depth.awaiting_backfill} waiting for the backfill."
            )
        )
    return gate


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
