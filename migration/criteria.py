"""The success criterion each forward phase step waits for, computed per day from recorded
data (database rows and the outbox's depth, never one process's memory).

The seed's criteria, each the criterion of the step out of its phase, and each to hold on
every one of the last `MIGRATION_CRITERION_DAYS` consecutive days:

- 0 -> 1: none (the plan names none).
- 1 -> 2: balance match rate above 99.99 % (wallets matched / wallets checked), from that
  day's reconciliation runs.
- 2 -> 3: TigerBeetle's read latency below 50 % of MongoDB's (the day's means), from that
  day's shadow comparisons.
- in phase 3, a wider read rollout past a step, and 3 -> 4: fallback rate below 0.1 % of the
  reads meant for TigerBeetle (`ReadRouteCount`), counted on days the rollout stayed at that
  step or more all day (100 % for 3 -> 4; the share from the flags' audit).
- in phase 4, no step forward: zero data loss (the drain and the final reconciliation when
  entering it refuse the step; shown as writes lost since).

Acknowledged legacy wallets (`migration.legacy_cases`) are set aside as reconciliation sets
them aside, and listed. Which criterion a step waits for, and whether it refuses the step, is
`migration.phase_plan`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypedDict

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.template.defaultfilters import pluralize
from django.utils import timezone

from domain import errors
from domain.ids import WalletKey
from flags.models import FlagChange
from flags.phases import READ_CUTOVER, READ_ROLLOUT, TIGERBEETLE_ONLY, Phase, current_state
from migration.legacy_cases import AcknowledgedCases
from migration.models import (
    ReadRouteCount,
    ReconciliationMismatch,
    ReconciliationRun,
    ShadowComparison,
)
from migration.outbox import MirrorOutbox, OutboxDepth

MATCH_RATE_TARGET = Decimal("0.9999")  # a day holds above it
LATENCY_RATIO_TARGET = Decimal("0.5")  # a day holds below it
FALLBACK_RATE_TARGET = Decimal("0.001")  # a day holds below it
CONSECUTIVE_DAYS = 7  # the seed's; MIGRATION_CRITERION_DAYS sets what the gates require
DAYS_SHOWN_MIN = 7
SET_ASIDE_NAMED_MAX = 20

# Reads the outbox's depth when a criterion needs it (None when MongoDB does not answer).
OutboxDepthReader = Callable[[], OutboxDepth | None]


def percent(share: Decimal) -> str:
    """A share as people write it: 1 for 1.0, 12.5 for 12.50, 100 for 100.0."""
    return f"{share.normalize():f}"


def outbox_depth_of(outbox: MirrorOutbox) -> OutboxDepth | None:
    """The outbox's depth, or None when MongoDB does not answer (a figure, not a failure)."""
    try:
        return outbox.depth()
    except errors.StoreUnavailable:
        return None


# --- figures over a period (the dashboard) --------------------------------------------------


@dataclass(frozen=True)
class ShadowFigures:
    compared: int
    matched: int
    mismatched: int
    mongo_latency_us: float | None
    tb_latency_us: float | None
    set_aside: int = 0  # mismatches of acknowledged legacy wallets: not counted, listed

    @property
    def match_rate(self) -> Decimal | None:
        """Matched / (matched + mismatched); None before any comparison."""
        decided = self.matched + self.mismatched
        if not decided:
            return None
        return Decimal(self.matched) / Decimal(decided)


def shadow_figures(days: int = CONSECUTIVE_DAYS) -> ShadowFigures:
    return shadow_figures_since(timezone.now() - timedelta(days=days))


def shadow_figures_since(since: datetime) -> ShadowFigures:
    """The shadow comparisons made since `since` (the dashboard's days, the guard's window),
    acknowledged legacy wallets set aside."""
    rows = ShadowComparison.objects.filter(compared_at__gte=since)
    figures = rows.aggregate(
        compared=Count("id"),
        matched=Count("id", filter=Q(outcome=ShadowComparison.Outcome.MATCH)),
        mismatched=Count("id", filter=Q(outcome=ShadowComparison.Outcome.MISMATCH)),
        mongo_latency_us=Avg("mongo_latency_us"),
        tb_latency_us=Avg("tb_latency_us", filter=Q(tb_latency_us__isnull=False)),
    )
    set_aside = sum(set_aside_shadow_mismatches(since).values())
    figures["mismatched"] -= set_aside
    return ShadowFigures(**figures, set_aside=set_aside)


def set_aside_shadow_mismatches(
    since: datetime, cases: AcknowledgedCases | None = None
) -> dict[date, int]:
    """Per day: shadow mismatches of acknowledged legacy wallets, set aside (not counted)."""
    cases = AcknowledgedCases() if cases is None else cases
    if not cases:
        return {}
    rows = ShadowComparison.objects.filter(
        compared_at__gte=since,
        outcome=ShadowComparison.Outcome.MISMATCH,
        client_id__in=cases.client_ids,
    )
    per_day: dict[date, int] = {}
    for row in rows:
        if cases.sets_aside(row):
            day = timezone.localdate(row.compared_at)
            per_day[day] = per_day.get(day, 0) + 1
    return per_day


def read_routes(days: int = CONSECUTIVE_DAYS) -> dict[str, int]:
    since = timezone.now() - timedelta(days=days)
    rows = (
        ReadRouteCount.objects.filter(hour__gte=since).values("route").annotate(total=Sum("count"))
    )
    return {row["route"]: int(row["total"]) for row in rows}


def fallback_rate(days: int = CONSECUTIVE_DAYS) -> Decimal | None:
    """Fallbacks / reads meant for TigerBeetle (served by it, or by MongoDB after a failure)."""
    routes = read_routes(days)
    meant_for_tb = routes.get("tigerbeetle", 0) + routes.get("fallback", 0)
    if not meant_for_tb:
        return None
    return Decimal(routes.get("fallback", 0)) / Decimal(meant_for_tb)


def last_reconciliation() -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(finished_at__isnull=False).first()


def reconciliation_match_rate(days: int = CONSECUTIVE_DAYS) -> tuple[Decimal | None, int, int]:
    """(match rate, wallets checked, set aside) over the period's reconciliation runs."""
    since = timezone.now() - timedelta(days=days)
    rows = list(daily_reconciliation_figures(since).values())
    checked = sum(row.checked - row.set_aside for row in rows)
    matched = sum(row.matched for row in rows)
    set_aside = sum(row.set_aside for row in rows)
    return (Decimal(matched) / Decimal(checked) if checked else None), checked, set_aside


@dataclass(frozen=True)
class OpenMismatches:
    """The last reconciliation's mismatches no re-check has resolved: `count` of them refuse
    a forward step; those of acknowledged legacy wallets are set aside, and named."""

    run_id: int | None
    count: int
    set_aside: tuple[WalletKey, ...] = ()
    # Of `count`: the transfer registry's differences (a repair mends them, not a re-check).
    transfer_differences: int = 0


def open_mismatches(cases: AcknowledgedCases | None = None) -> OpenMismatches:
    run = last_reconciliation()
    if run is None:
        return OpenMismatches(run_id=None, count=0)
    cases = AcknowledgedCases() if cases is None else cases
    count, transfers, set_aside = 0, 0, []
    for mismatch in run.mismatches.filter(resolved_at__isnull=True):
        if cases.sets_aside(mismatch):
            set_aside.append(WalletKey.from_row(mismatch))
        else:
            count += 1
            transfers += mismatch.is_transfer_difference
    return OpenMismatches(
        run.pk,
        count,
        tuple(sorted(set_aside, key=WalletKey.sort_key)),
        transfer_differences=transfers,
    )


def lost_write_mismatches(run: ReconciliationRun | None) -> tuple[int, int]:
    """(mismatches that may be lost writes, acknowledged legacy wallets set aside) of a run,
    leaving out those a re-check has since resolved."""
    if run is None:
        return 0, 0
    cases = AcknowledgedCases()
    lost = legacy = 0
    for mismatch in run.mismatches.filter(resolved_at__isnull=True):
        if cases.sets_aside(mismatch):
            legacy += 1
        else:
            lost += 1
    return lost, legacy


def open_transfer_differences(run: ReconciliationRun | None) -> int:
    """A run's transfer registry differences no repair has resolved (counted among its
    possibly lost writes by `lost_write_mismatches`)."""
    if run is None:
        return 0
    return run.mismatches.filter(
        kind__in=ReconciliationMismatch.TRANSFER_KINDS, resolved_at__isnull=True
    ).count()


def writes_lost(outbox_depth: OutboxDepth | None) -> tuple[int | None, str]:
    """Writes MongoDB acknowledged that TigerBeetle does not hold: parked outbox entries
    plus wallets whose balances differed in the last reconciliation."""
    if outbox_depth is None:
        return None, "MongoDB unavailable: the outbox cannot be read"
    run = last_reconciliation()
    mismatched, legacy = lost_write_mismatches(run)
    detail = (
        f"{outbox_depth.parked} parked outbox entries, "
        f"{mismatched} wallet{pluralize(mismatched)} mismatched in the last run"
    )
    if legacy:
        detail += f" (set aside: {legacy} acknowledged legacy wallets)"
    return outbox_depth.parked + mismatched, detail


class DailyShadowFigures(TypedDict):
    """One day of shadow comparisons (latencies None on a day with none)."""

    day: date
    matched: int
    mismatched: int
    mongo_latency_us: float | None
    tb_latency_us: float | None


def daily_shadow_figures(days: int = 14) -> list[DailyShadowFigures]:
    """Per day: match rate and average read latency of each store (for the charts); the
    mismatches of acknowledged legacy wallets are set aside."""
    since = timezone.now() - timedelta(days=days)
    rows: list[DailyShadowFigures] = list(
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
    set_aside = set_aside_shadow_mismatches(since)
    for row in rows:
        row["mismatched"] -= set_aside.get(row["day"], 0)
    return rows


# --- the per-day results a step's criterion is judged on -----------------------------------


@dataclass(frozen=True)
class DayResult:
    """One day of a step's criterion: met (True/False), or None without data that day."""

    day: date
    met: bool | None
    value: str


def days_shown(required_days: int) -> list[date]:
    """The days a criterion is shown and judged on, oldest first, ending today: the required
    days before today (so a today without data yet does not break the run), at least a week."""
    count = max(required_days, DAYS_SHOWN_MIN) + 1
    today = timezone.localdate()
    return [today - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


@dataclass(frozen=True)
class ReconciliationDay:
    checked: int
    matched: int
    set_aside: int
    runs: int


def daily_reconciliation_figures(
    since: datetime, cases: AcknowledgedCases | None = None
) -> dict[date, ReconciliationDay]:
    """Per day: wallets checked and matched by that day's finished runs (a failed run is
    left out), and the mismatches of acknowledged legacy wallets among them (set aside)."""
    cases = AcknowledgedCases() if cases is None else cases
    runs = list(
        ReconciliationRun.objects.filter(
            finished_at__isnull=False, started_at__gte=since, error=""
        ).only("pk", "started_at", "checked", "matched")
    )
    set_aside_by_run: dict[int, int] = {}
    if cases and runs:
        for mismatch in ReconciliationMismatch.objects.filter(
            run__in=runs, kind=ReconciliationMismatch.Kind.BALANCE, client_id__in=cases.client_ids
        ):
            if cases.sets_aside(mismatch):
                set_aside_by_run[mismatch.run_id] = set_aside_by_run.get(mismatch.run_id, 0) + 1
    per_day: dict[date, ReconciliationDay] = {}
    for run in runs:
        day = timezone.localdate(run.started_at)
        before = per_day.get(day, ReconciliationDay(0, 0, 0, 0))
        per_day[day] = ReconciliationDay(
            before.checked + run.checked,
            before.matched + run.matched,
            before.set_aside + set_aside_by_run.get(run.pk, 0),
            before.runs + 1,
        )
    return per_day


def daily_match_rates(days: list[date], cases: AcknowledgedCases | None = None) -> list[DayResult]:
    """1 -> 2, per day: wallets matched / wallets checked by that day's reconciliation runs,
    above 99.99 %; acknowledged legacy wallets set aside (said in the day's figure)."""
    figures = daily_reconciliation_figures(_start_of(days[0]), cases)
    results = []
    for day in days:
        row = figures.get(day)
        checked = row.checked - row.set_aside if row else 0
        if row is None or checked <= 0:
            results.append(DayResult(day, None, "no reconciliation run"))
            continue
        rate = Decimal(row.matched) / Decimal(checked)
        aside = f", {row.set_aside} set aside" if row.set_aside else ""
        results.append(DayResult(day, rate > MATCH_RATE_TARGET, f"{rate:.4%} of {checked}{aside}"))
    return results


def daily_latency_ratios(days: list[date]) -> list[DayResult]:
    """2 -> 3, per day: TigerBeetle's mean read latency over MongoDB's, in the shadow
    comparisons that timed both, below 50 %."""
    rows = (
        ShadowComparison.objects.filter(
            compared_at__gte=_start_of(days[0]),
            tb_latency_us__isnull=False,
            mongo_latency_us__isnull=False,
        )
        .annotate(day=TruncDate("compared_at"))
        .values("day")
        .annotate(reads=Count("id"), tb=Avg("tb_latency_us"), mongo=Avg("mongo_latency_us"))
    )
    by_day = {row["day"]: row for row in rows}
    results = []
    for day in days:
        row = by_day.get(day)
        if row is None or not row["mongo"]:
            results.append(DayResult(day, None, "no timed comparison"))
            continue
        ratio = Decimal(str(row["tb"])) / Decimal(str(row["mongo"]))
        results.append(
            DayResult(
                day,
                ratio < LATENCY_RATIO_TARGET,
                f"{ratio:.0%} ({row['tb']:.0f} vs {row['mongo']:.0f} µs, {row['reads']} reads)",
            )
        )
    return results


def _share_of(values: dict[str, str]) -> Decimal:
    """The share of clients reading TigerBeetle under these flag values (audit strings)."""
    if values.get(TIGERBEETLE_ONLY) == "on":
        return Decimal(100)
    if values.get(READ_CUTOVER) != "on":
        return Decimal(0)
    return Decimal(values.get(READ_ROLLOUT) or 0)


def daily_rollout_floor(days: list[date]) -> dict[date, Decimal]:
    """Per day: the lowest share of clients TigerBeetle served at any moment of it, from the
    flags now and their audited flips (every flip is audited: `flags.audit`), walked back."""
    state = current_state()
    values = {
        TIGERBEETLE_ONLY: "on" if state.tigerbeetle_only else "off",
        READ_CUTOVER: "on" if state.read_cutover else "off",
        READ_ROLLOUT: str(state.read_rollout_percent),
    }
    start = _start_of(days[0])
    flips = FlagChange.objects.filter(
        flag_name__in=[TIGERBEETLE_ONLY, READ_CUTOVER, READ_ROLLOUT], changed_at__gte=start
    ).order_by("-changed_at", "-id")
    # (from, until, share), newest first: each flip undone gives the share before it.
    spans: list[tuple[datetime, datetime, Decimal]] = []
    until = timezone.now()
    for flip in flips:
        spans.append((flip.changed_at, until, _share_of(values)))
        values[flip.flag_name] = flip.old_value
        until = flip.changed_at
    spans.append((start, until, _share_of(values)))
    floor: dict[date, Decimal] = {}
    for day in days:
        day_start, day_end = _start_of(day), _start_of(day + timedelta(days=1))
        shares = [share for begin, end, share in spans if begin < day_end and end > day_start]
        floor[day] = min(shares) if shares else Decimal(0)
    return floor


def daily_fallback_rates(days: list[date], *, share_at_least: Decimal) -> list[DayResult]:
    """Rollout steps and 3 -> 4, per day: fallbacks / reads meant for TigerBeetle, below
    0.1 %, counted only on days the rollout stayed at `share_at_least` or more all day."""
    rows = (
        ReadRouteCount.objects.filter(hour__gte=_start_of(days[0]))
        .annotate(day=TruncDate("hour"))
        .values("day", "route")
        .annotate(total=Sum("count"))
    )
    counts: dict[date, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["day"], {})[row["route"]] = int(row["total"])
    floors = daily_rollout_floor(days)
    results = []
    for day in days:
        if floors[day] < share_at_least:
            note = (
                f"rollout down to {percent(floors[day])}%, not {percent(share_at_least)}% all day"
            )
            results.append(DayResult(day, None, note))
            continue
        routes = counts.get(day, {})
        meant = routes.get("tigerbeetle", 0) + routes.get("fallback", 0)
        if not meant:
            results.append(DayResult(day, None, "no TigerBeetle reads"))
            continue
        rate = Decimal(routes.get("fallback", 0)) / Decimal(meant)
        results.append(DayResult(day, rate < FALLBACK_RATE_TARGET, f"{rate:.3%} of {meant}"))
    return results


def daily_writes_lost(days: list[date]) -> list[DayResult]:
    """Per day: held when every reconciliation run that day found no lost write."""
    runs = ReconciliationRun.objects.filter(
        finished_at__isnull=False, started_at__gte=_start_of(days[0])
    )
    worst: dict[date, int] = {}
    for run in runs:
        lost, _ = lost_write_mismatches(run)
        day = timezone.localdate(run.started_at)
        worst[day] = max(worst.get(day, 0), lost)
    results = []
    for day in days:
        if day not in worst:
            results.append(DayResult(day, None, "no reconciliation run"))
        else:
            results.append(DayResult(day, worst[day] == 0, f"{worst[day]} wallets"))
    return results


# --- a step's criterion ---------------------------------------------------------------------


@dataclass(frozen=True)
class Blocker:
    """What keeps a criterion from holding, with the list that shows the cases, by name
    ("" when none; the back-office knows where each list is), and the action that mends it,
    by name ("" when none; the back-office offers it to those allowed to take it)."""

    text: str
    cases: str = ""
    link_text: str = "See the cases"
    action: str = ""


# The actions a blocker can offer.
ACTION_REQUEUE_PARKED = "requeue_parked"
ACTION_RECONCILE = "reconcile"
ACTION_RECHECK_MISMATCHED = "recheck_mismatched"

# The lists of cases a blocker can point to.
CASES_SHADOW_MISMATCHES = "shadow_mismatches"
CASES_SHADOW_COMPARISONS = "shadow_comparisons"
CASES_MISMATCHES = "mismatches"
CASES_RUNS = "runs"
CASES_MILESTONES = "milestones"
CASES_LEGACY = "legacy_cases"


@dataclass
class StepCriterion:
    """The criterion a step waits for, and how it stands day by day. `gates`: whether the
    step is refused until it holds (the plan names none for 0 -> 1; phase 4's is shown)."""

    phase: Phase
    next_step: str
    statement: str
    met: bool | None
    now: str
    days: list[DayResult] = field(default_factory=list)
    data_since: datetime | None = None
    blockers: list[Blocker] = field(default_factory=list)
    required_days: int = CONSECUTIVE_DAYS
    gates: bool = True
    set_aside: list[str] = field(default_factory=list)  # acknowledged legacy wallets, named

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
        days = list(self.days)
        if days and days[-1].met is None:
            days.pop()
        return days[-held].day

    @property
    def held_text(self) -> str:
        """How long it has held, in the page's words."""
        if self.required_days and self.held_days >= self.required_days:
            return (
                f"Held on each of the last {self.held_days} days "
                f"({self.required_days} consecutive needed)"
            )
        return f"Held {self.held_days} of the {self.required_days} consecutive days needed"

    @property
    def holds(self) -> bool:
        """Whether the step may be taken on it: no criterion, or held long enough."""
        return not self.gates or self.met is True

    def judge(self) -> StepCriterion:
        """Set `met` from the days: held on each of the required consecutive days; None
        without any data (and with no days required, met at once)."""
        if self.required_days == 0:
            self.met = True
        elif all(day.met is None for day in self.days):
            self.met = None
        else:
            self.met = self.held_days >= self.required_days
        return self

    def figures(self) -> dict[str, Any]:
        """The criterion as it stood, for the phase change's audit record."""
        return {
            "next_step": self.next_step,
            "statement": self.statement,
            "gates": self.gates,
            "met": self.met,
            "now": self.now,
            "held_days": self.held_days,
            "required_days": self.required_days,
            "days": [
                {"day": day.day.isoformat(), "met": day.met, "value": day.value}
                for day in self.days
            ],
            "set_aside": self.set_aside,
        }


NO_CRITERION_FOR_DUAL_WRITE = (
    "None: the plan names no criterion for starting dual write (running the backfill first "
    "keeps each legacy wallet's creation time in TigerBeetle)"
)


def no_criterion(
    phase: Phase, *, next_step: str, statement: str = NO_CRITERION_FOR_DUAL_WRITE
) -> StepCriterion:
    """A step the plan gives no criterion: 0 -> 1, a wider rollout below the next step."""
    return StepCriterion(
        phase,
        next_step,
        statement,
        True,
        "nothing to wait for",
        required_days=0,
        gates=False,
    )


def _set_aside_names(keys: list[WalletKey]) -> list[str]:
    return [key.describe() for key in sorted(set(keys), key=WalletKey.sort_key)]


def match_rate_criterion(phase: Phase, *, next_step: str, required_days: int) -> StepCriterion:
    """1 -> 2: the reconciliation's balance match rate on each of the required days."""
    days = days_shown(required_days)
    cases = AcknowledgedCases()
    rate, checked, set_aside = reconciliation_match_rate(len(days))
    criterion = StepCriterion(
        phase,
        next_step,
        f"Balance match rate above {MATCH_RATE_TARGET:.2%} (reconciliation: wallets matched "
        f"/ wallets checked) on each of {required_days} consecutive days",
        None,
        f"{rate:.4%} of {checked} over {len(days)} days" if rate is not None else "no run yet",
        days=daily_match_rates(days, cases),
        data_since=ReconciliationRun.objects.order_by("started_at")
        .values_list("started_at", flat=True)
        .first(),
        required_days=required_days,
    ).judge()
    if set_aside:
        criterion.set_aside = _legacy_set_aside(cases, since=_start_of(days[0]))
    missed = [day for day in criterion.days if day.met is False]
    if missed:
        criterion.blockers.append(
            Blocker(f"Wallets differed on {len(missed)} of these days.", CASES_MISMATCHES)
        )
    if any(day.met is None for day in criterion.days[:-1]):
        criterion.blockers.append(
            Blocker(
                "Days without a reconciliation run count as not held.",
                CASES_RUNS,
                "Reconciliation runs",
            )
        )
    return criterion


def _legacy_set_aside(cases: AcknowledgedCases, *, since: datetime) -> list[str]:
    """The acknowledged legacy wallets reconciliation runs since `since` found (set aside)."""
    found = ReconciliationMismatch.objects.filter(
        run__started_at__gte=since,
        kind=ReconciliationMismatch.Kind.BALANCE,
        client_id__in=cases.client_ids,
    )
    keys = [WalletKey.from_row(mismatch) for mismatch in found if cases.sets_aside(mismatch)]
    return _set_aside_names(keys)[:SET_ASIDE_NAMED_MAX]


def latency_criterion(phase: Phase, *, next_step: str, required_days: int) -> StepCriterion:
    """2 -> 3: TigerBeetle's shadow read latency under half of MongoDB's, each day."""
    days = days_shown(required_days)
    shadow = shadow_figures(len(days))
    now = "no timed comparison yet"
    if shadow.tb_latency_us and shadow.mongo_latency_us:
        ratio = Decimal(str(shadow.tb_latency_us)) / Decimal(str(shadow.mongo_latency_us))
        now = (
            f"{ratio:.0%} ({shadow.tb_latency_us:.0f} vs {shadow.mongo_latency_us:.0f} µs) "
            f"over {len(days)} days"
        )
    criterion = StepCriterion(
        phase,
        next_step,
        f"TigerBeetle's balance read latency below {LATENCY_RATIO_TARGET:.0%} of MongoDB's "
        f"(shadow reads, mean of the day) on each of {required_days} consecutive days",
        None,
        now,
        days=daily_latency_ratios(days),
        data_since=ShadowComparison.objects.order_by("compared_at")
        .values_list("compared_at", flat=True)
        .first(),
        required_days=required_days,
    ).judge()
    missed = [day for day in criterion.days if day.met is False]
    if missed:
        criterion.blockers.append(
            Blocker(
                f"TigerBeetle's reads were not under half of MongoDB's on {len(missed)} days.",
                CASES_SHADOW_COMPARISONS,
                "Shadow comparisons",
            )
        )
    if shadow.mismatched:
        criterion.blockers.append(
            Blocker(
                f"Not this criterion's, but see them: {shadow.mismatched} shadow comparisons "
                "mismatched.",
                CASES_SHADOW_MISMATCHES,
            )
        )
    if shadow.set_aside:
        criterion.set_aside = [
            f"{shadow.set_aside} shadow comparisons of acknowledged legacy wallets"
        ]
    return criterion


def fallback_criterion(
    phase: Phase, *, next_step: str, required_days: int, share_at_least: Decimal
) -> StepCriterion:
    """A wider rollout past a step, and 3 -> 4: the fallback rate under 0.1 % on each of the
    required days the rollout stayed at the step (100 % for phase 4) all day."""
    days = days_shown(required_days)
    fallback = fallback_rate(len(days))
    criterion = StepCriterion(
        phase,
        next_step,
        f"Fallback rate below {FALLBACK_RATE_TARGET:.1%} of TigerBeetle reads on each of "
        f"{required_days} consecutive days at {percent(share_at_least)}% read rollout or more",
        None,
        f"{fallback:.3%} over {len(days)} days" if fallback is not None else "no reads yet",
        days=daily_fallback_rates(days, share_at_least=share_at_least),
        data_since=ReadRouteCount.objects.order_by("hour").values_list("hour", flat=True).first(),
        required_days=required_days,
    ).judge()
    missed = [day for day in criterion.days if day.met is False]
    if missed:
        criterion.blockers.append(
            Blocker(f"Fallbacks above the target on {len(missed)} days (see the read routes).")
        )
    below = [day for day in criterion.days if day.value.startswith("rollout down")]
    if below:
        criterion.blockers.append(
            Blocker(
                f"{len(below)} of these days were not at {percent(share_at_least)}% rollout "
                "all day, so they do not count."
            )
        )
    return criterion


def writes_lost_criterion(phase: Phase, *, outbox_depth: OutboxDepthReader) -> StepCriterion:
    """In phase 4 (no step forward): zero data loss, as writes lost now and per day."""
    depth = outbox_depth()
    lost, detail = writes_lost(depth)
    run = last_reconciliation()
    criterion = StepCriterion(
        phase,
        "staying on TigerBeetle only",
        "Zero data loss: entering phase 4 drained the mirror and reconciled every wallet; "
        "since then, no parked outbox entry and no wallet differing in the last reconciliation",
        None if lost is None or (run is None and not lost) else lost == 0,
        detail if run is not None or lost else "no reconciliation has run yet",
        days=daily_writes_lost(days_shown(0)),
        data_since=ReconciliationRun.objects.order_by("started_at")
        .values_list("started_at", flat=True)
        .first(),
        required_days=0,
        gates=False,
    )
    if depth and depth.parked:
        criterion.blockers.append(
            Blocker(
                f"{depth.parked} parked outbox entries: TigerBeetle refused them or the mirror "
                "gave up on them; TigerBeetle lacks these writes.",
                action=ACTION_REQUEUE_PARKED,
            )
        )
    criterion.blockers += _mismatch_blockers(run)
    _, legacy = lost_write_mismatches(run)
    if legacy:
        criterion.set_aside = [f"{legacy} acknowledged legacy wallets in the last reconciliation"]
    return criterion


def _mismatch_blockers(run: ReconciliationRun | None) -> list[Blocker]:
    """The last reconciliation's open cases, each kind with the action that mends it."""
    if run is None:
        return [
            Blocker(
                "No reconciliation has run yet.",
                CASES_RUNS,
                "Reconciliation runs",
                action=ACTION_RECONCILE,
            )
        ]
    found = []
    real, _ = lost_write_mismatches(run)
    transfers = open_transfer_differences(run)
    if real - transfers:
        found.append(
            Blocker(
                f"{real - transfers} wallet{pluralize(real - transfers)} "
                f"{'differs' if real - transfers == 1 else 'differ'} in the last reconciliation.",
                CASES_MISMATCHES,
                action=ACTION_RECHECK_MISMATCHED,
            )
        )
    if transfers:
        found.append(
            Blocker(
                f"{transfers} differences between the transfer registry and TigerBeetle in the "
                "last reconciliation (each case's page has its repair, or says why none).",
                CASES_MISMATCHES,
            )
        )
    return found


# --- every step's criterion at once (/metrics) -----------------------------------------------

# The step criteria by the names /metrics gives them (`wallet_migration_criterion_status`): the
# step out of phase 1, 2 and 3 (to phase 4, at 100 % rollout), and zero data loss in phase 4.
CRITERION_NAMES = ("reconciliation_match_rate", "read_latency", "fallback_rate", "writes_lost")


def every_step_criterion(
    *, outbox_depth: OutboxDepthReader, required_days: int
) -> dict[str, StepCriterion]:
    """Each step's criterion as it stands now, whatever the current phase: a dashboard
    watches the later steps' figures before they are next. By CRITERION_NAMES."""
    criteria = {
        "reconciliation_match_rate": match_rate_criterion(
            Phase.DUAL_WRITE, next_step="phase 2 - shadow read", required_days=required_days
        ),
        "read_latency": latency_criterion(
            Phase.SHADOW_READ, next_step="phase 3 - read cutover", required_days=required_days
        ),
        "fallback_rate": fallback_criterion(
            Phase.READ_CUTOVER,
            next_step="phase 4 - TigerBeetle only",
            required_days=required_days,
            share_at_least=Decimal(100),
        ),
        "writes_lost": writes_lost_criterion(Phase.TIGERBEETLE_ONLY, outbox_depth=outbox_depth),
    }
    assert tuple(criteria) == CRITERION_NAMES
    return criteria
