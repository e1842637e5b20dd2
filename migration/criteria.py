"""The success criterion each phase step waits for, and the recorded figures it is computed
from (database rows and the outbox's depth, never one process's memory).

For the current phase, `next_step_criterion` says which criterion the next step waits for and
how it stands: the phase page and the dashboard show it, and a step's plan
(`migration.phase_plan`) carries it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from domain import errors
from flags.models import Milestone
from flags.phases import MigrationState, Phase
from migration.models import (
    ReadRouteCount,
    ReconciliationMismatch,
    ReconciliationRun,
    ShadowComparison,
)
from migration.outbox import MirrorOutbox, OutboxDepth

MATCH_RATE_TARGET = Decimal("0.9999")
FALLBACK_RATE_TARGET = Decimal("0.001")
CONSECUTIVE_DAYS = 7

# Reads the outbox's depth when a criterion needs it (None when MongoDB does not answer).
OutboxDepthReader = Callable[[], OutboxDepth | None]


def outbox_depth_of(outbox: MirrorOutbox) -> OutboxDepth | None:
    """The outbox's depth, or None when MongoDB does not answer (a figure, not a failure)."""
    try:
        return outbox.depth()
    except errors.StoreUnavailable:
        return None


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


def writes_lost(outbox_depth: OutboxDepth | None) -> tuple[int | None, str]:
    """Writes MongoDB acknowledged that TigerBeetle does not hold: parked outbox entries
    plus wallets whose balances differed in the last reconciliation."""
    if outbox_depth is None:
        return None, "MongoDB unavailable: the outbox cannot be read"
    run = last_reconciliation()
    mismatched, legacy = lost_write_mismatches(run)
    detail = (
        f"{outbox_depth.parked} parked outbox entries, "
        f"{mismatched} wallets mismatched in the last run"
    )
    if legacy:
        detail += f" (not counted: {legacy} legacy wallets inconsistent in MongoDB itself)"
    return outbox_depth.parked + mismatched, detail


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


# --- the criterion the next step waits for -------------------------------------------------


@dataclass(frozen=True)
class DayResult:
    """One day of a step's criterion: met (True/False), or None without data that day."""

    day: date
    met: bool | None
    value: str


@dataclass(frozen=True)
class Blocker:
    """What keeps a criterion from holding, with the list that shows the cases, by name
    ("" when none; the back-office knows where each list is)."""

    text: str
    cases: str = ""
    link_text: str = "See the cases"


# The lists of cases a blocker can point to.
CASES_SHADOW_MISMATCHES = "shadow_mismatches"
CASES_MISMATCHES = "mismatches"
CASES_RUNS = "runs"
CASES_MILESTONES = "milestones"


@dataclass
class StepCriterion:
    """For the current phase: the criterion the next step waits for, and how it stands."""

    phase: Phase
    next_step: str
    statement: str
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
    credit = mismatch.mongo_credit_minor
    debit = mismatch.mongo_debit_minor
    historical = mismatch.mongo_historical_credit_minor
    if mismatch.kind != ReconciliationMismatch.Kind.BALANCE:
        return False
    if credit is None or debit is None or historical is None:
        return False
    return credit != historical - debit


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


def next_step_criterion(state: MigrationState, *, outbox_depth: OutboxDepthReader) -> StepCriterion:
    """The criterion the step after the current phase waits for. `outbox_depth` is called
    only by the criteria that count outbox entries (phases 1, 3 and 4)."""
    phase = state.phase
    if phase == Phase.LEGACY:
        return _backfill_criterion(phase)
    if phase == Phase.DUAL_WRITE:
        return _writes_lost_criterion(phase, "phase 2 - shadow read", outbox_depth)
    if phase == Phase.SHADOW_READ:
        return _match_rate_criterion(phase)
    if phase == Phase.READ_CUTOVER:
        return _fallback_criterion(phase, state, outbox_depth)
    return _writes_lost_criterion(phase, "staying on TigerBeetle only", outbox_depth)


def _held_long_enough(criterion: StepCriterion) -> bool | None:
    """Met when it held on each of the required consecutive days; None without any data."""
    if all(day.met is None for day in criterion.days):
        return None
    return criterion.held_days >= criterion.required_days


def _backfill_criterion(phase: Phase) -> StepCriterion:
    done = Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).first()
    criterion = StepCriterion(
        phase,
        "phase 1 - dual write",
        "The backfill has imported every legacy wallet into TigerBeetle (run it before dual "
        "write so wallets keep their creation time; phase 4 refuses without it)",
        done is not None,
        f"completed {done.reached_at:%Y-%m-%d %H:%M}" if done else "not run yet",
        required_days=0,
    )
    if done is None:
        criterion.blockers.append(
            Blocker("The backfill has not completed.", CASES_MILESTONES, "Milestones")
        )
    return criterion


def _writes_lost_criterion(
    phase: Phase, next_step: str, outbox_depth: OutboxDepthReader
) -> StepCriterion:
    lost, detail = writes_lost(outbox_depth())
    run = last_reconciliation()
    criterion = StepCriterion(
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
        criterion.blockers.append(
            Blocker(f"{depth.parked} parked outbox entries (the mirror gave up on them).")
        )
    real, legacy = lost_write_mismatches(run)
    if real:
        criterion.blockers.append(
            Blocker(f"{real} wallets differ in the last reconciliation.", CASES_MISMATCHES)
        )
    if legacy:
        criterion.blockers.append(
            Blocker(
                f"Not counted: {legacy} legacy wallets whose MongoDB fields disagree among "
                "themselves (imported as they were).",
                CASES_MISMATCHES,
            )
        )
    if run is None:
        criterion.blockers.append(
            Blocker("No reconciliation has run yet.", CASES_RUNS, "Reconciliation runs")
        )
    return criterion


def _match_rate_criterion(phase: Phase) -> StepCriterion:
    shadow = shadow_figures(CONSECUTIVE_DAYS)
    rate = shadow.match_rate
    criterion = StepCriterion(
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
    criterion.met = _held_long_enough(criterion)
    if shadow.mismatched:
        criterion.blockers.append(
            Blocker(
                f"{shadow.mismatched} comparisons mismatched in the last {CONSECUTIVE_DAYS} days.",
                CASES_SHADOW_MISMATCHES,
            )
        )
    missing = [day for day in criterion.days if day.met is None]
    if missing:
        criterion.blockers.append(
            Blocker(f"{len(missing)} of the last {CONSECUTIVE_DAYS} days have no comparison.")
        )
    return criterion


def _fallback_criterion(
    phase: Phase, state: MigrationState, outbox_depth: OutboxDepthReader
) -> StepCriterion:
    fallback = fallback_rate(CONSECUTIVE_DAYS)
    criterion = StepCriterion(
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
    criterion.met = _held_long_enough(criterion)
    failed = [day for day in criterion.days if day.met is False]
    if failed:
        criterion.blockers.append(
            Blocker(f"Fallbacks above the target on {len(failed)} days (see the read routes).")
        )
    if not Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).exists():
        criterion.blockers.append(
            Blocker("Phase 4 needs the backfill to have completed.", CASES_MILESTONES, "Milestones")
        )
    depth = outbox_depth()
    if depth and (depth.parked or depth.awaiting_backfill):
        criterion.blockers.append(
            Blocker(
                f"Phase 4 needs an empty outbox: {depth.parked} parked, "
                f"{depth.awaiting_backfill} waiting for the backfill."
            )
        )
    return criterion


# --- every step's criterion at once (/metrics) -----------------------------------------------

# The step criteria by the names /metrics gives them (`wallet_migration_criterion_status`).
CRITERION_NAMES = ("backfill", "writes_lost", "shadow_match_rate", "fallback_rate")


def every_step_criterion(
    state: MigrationState, *, outbox_depth: OutboxDepthReader
) -> dict[str, StepCriterion]:
    """Each step's criterion as it stands now, whatever the current phase: a dashboard
    watches the later steps' figures before they are next. By CRITERION_NAMES."""
    criteria = {
        "backfill": _backfill_criterion(Phase.LEGACY),
        "writes_lost": _writes_lost_criterion(
            Phase.DUAL_WRITE, "phase 2 - shadow read", outbox_depth
        ),
        "shadow_match_rate": _match_rate_criterion(Phase.SHADOW_READ),
        "fallback_rate": _fallback_criterion(Phase.READ_CUTOVER, state, outbox_depth),
    }
    assert tuple(criteria) == CRITERION_NAMES
    return criteria
