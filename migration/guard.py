"""The guard: steps the read rollout back without a person when the figures say reads are in
trouble, and never moves where money is written.

Every GUARD_INTERVAL_S (60 s, Celery beat) `check` reads the figures of the last
GUARD_WINDOW_S, never reaching back before the last flag change (data of an earlier share
must not step back the share that followed it):

- the mismatch rate: shadow comparisons (phase 2) and reconciliation runs (every phase)
  that found the stores differing, of those that compared (acknowledged legacy wallets set
  aside, as the criteria set them aside);
- the fallback rate: reads meant for TigerBeetle that MongoDB served (`ReadRouteCount`);
- TigerBeetle's error rate: reads meant for TigerBeetle that it failed, after the retries or
  with the breaker open (`ReadFallbackCount`);
- the outbox's age: the oldest write still waiting for the mirror, now.

Read routes are counted per hour; the guard keeps their running totals at each check
(`GuardCheck`), so a window's rates are the difference from the first check inside it. A
rate is judged over GUARD_MIN_SAMPLES reads (or comparisons) at least.

`decide` is a pure function from the figures to an action. In phase 3 a crossed threshold
steps the read rollout back to its last good share, the rollout step below the current share
(the criterion held there before the rollout was raised past it), or from the first step to
phase 2: a phase change made through `migration.phase_change.change_phase` as the actor
"guard", its audit row keeping the figures. In phases 0-2 and 4 it alerts and moves
nothing: phases 0-2 read from MongoDB already, and leaving phase 4 moves where money is
written (a pause, a copy back), which stays a person's decision. Every crossing raises an
alert (`migration.alerts`), one per step back or per threshold while it stays open.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from flags.models import FlagChange
from flags.phases import (
    SHADOW_READ,
    InvalidPhaseChange,
    MigrationState,
    Phase,
    current_state,
    state_for_phase,
)
from ledger.batches import LedgerBatches
from ledger.stores.mongo_store import MongoWalletStore
from migration import alerts, criteria
from migration.models import (
    Alert,
    GuardCheck,
    ReadFallbackCount,
    ReadRouteCount,
)
from migration.outbox import MirrorOutbox
from migration.phase_change import change_phase

log = logging.getLogger(__name__)
GUARD_ACTOR = "guard"
# Fallback reasons that are TigerBeetle failing a read (the rest: a wallet it lacks).
TIGERBEETLE_ERROR_REASONS = ("error", "breaker_open")
DEFAULT_PHASE_2_SHADOW_PERCENT = Decimal(10)
# Checks older than this are deleted as the guard runs (a window never reaches back so far).
CHECKS_KEPT_DAYS = 7
MOVES_NOTHING = (
    "the guard only alerts in phase {phase}: it steps back only the read rollout of phase 3, "
    "and never moves where money is written"
)


@dataclass(frozen=True)
class Thresholds:
    """The maxima (rates as fractions: 0.01 is 1 %) and the smallest sample a rate is
    judged on; from the GUARD_* settings."""

    max_mismatch_rate: Decimal
    max_fallback_rate: Decimal
    max_tb_error_rate: Decimal
    max_outbox_age_s: float
    min_samples: int

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            max_mismatch_rate=settings.GUARD_MAX_SHADOW_MISMATCH_RATE,
            max_fallback_rate=settings.GUARD_MAX_FALLBACK_RATE,
            max_tb_error_rate=settings.GUARD_MAX_TB_ERROR_RATE,
            max_outbox_age_s=settings.GUARD_MAX_OUTBOX_AGE_S,
            min_samples=settings.GUARD_MIN_SAMPLES,
        )


@dataclass(frozen=True)
class GuardFigures:
    """What the guard judges, over its window. `reads_since` None: no earlier check inside
    the window yet, so no read figures. `outbox_age_s` None: MongoDB did not answer."""

    window_start: str
    reads_since: str | None
    reads_meant: int
    fallbacks: int
    tigerbeetle_errors: int
    compared: int
    mismatched: int
    outbox_age_s: float | None

    def rate(self, *, part: int, whole: int, min_samples: int) -> Decimal | None:
        """part / whole, or None below the smallest sample judged."""
        if whole <= 0 or whole < min_samples:
            return None
        return Decimal(part) / Decimal(whole)


@dataclass(frozen=True)
class Breach:
    """A threshold crossed: its name, the figure and the maximum, as text."""

    threshold: str
    value: str
    maximum: str

    def __str__(self) -> str:
        return f"{self.threshold} {self.value} > {self.maximum}"


@dataclass(frozen=True)
class GuardDecision:
    """What the guard does: nothing (no breach), alert only (with why it moves nothing), or
    step back to `step_back_to`."""

    breaches: tuple[Breach, ...]
    step_back_to: MigrationState | None = None
    moves_nothing_because: str = ""


def _percent_text(rate: Decimal) -> str:
    return f"{rate:.3%}"


def breaches_of(figures: GuardFigures, thresholds: Thresholds) -> tuple[Breach, ...]:
    """Each threshold the figures cross."""
    found = []
    minimum = thresholds.min_samples
    rates = (
        (
            "mismatch_rate",
            figures.rate(part=figures.mismatched, whole=figures.compared, min_samples=minimum),
            thresholds.max_mismatch_rate,
        ),
        (
            "fallback_rate",
            figures.rate(part=figures.fallbacks, whole=figures.reads_meant, min_samples=minimum),
            thresholds.max_fallback_rate,
        ),
        (
            "tigerbeetle_error_rate",
            figures.rate(
                part=figures.tigerbeetle_errors, whole=figures.reads_meant, min_samples=minimum
            ),
            thresholds.max_tb_error_rate,
        ),
    )
    for name, rate, maximum in rates:
        if rate is not None and rate > maximum:
            found.append(Breach(name, _percent_text(rate), _percent_text(maximum)))
    age = figures.outbox_age_s
    if age is not None and age > thresholds.max_outbox_age_s:
        found.append(Breach("outbox_age", f"{age:.0f} s", f"{thresholds.max_outbox_age_s:.0f} s"))
    return tuple(found)


def step_back_from(
    state: MigrationState, *, rollout_steps: tuple[Decimal, ...], phase_2_shadow_percent: Decimal
) -> MigrationState:
    """Phase 3's last good share: the rollout step below the current share; below the first
    step, phase 2 (comparing `phase_2_shadow_percent` of reads, its share before)."""
    assert state.phase == Phase.READ_CUTOVER, "the guard steps back only phase 3"
    lower = [step for step in rollout_steps if step < state.read_rollout_percent]
    if lower:
        return state_for_phase(Phase.READ_CUTOVER, rollout_percent=max(lower))
    assert phase_2_shadow_percent > 0, "phase 2 compares a share of reads"
    return state_for_phase(Phase.SHADOW_READ, shadow_percent=phase_2_shadow_percent)


def decide(
    figures: GuardFigures,
    *,
    state: MigrationState,
    thresholds: Thresholds,
    rollout_steps: tuple[Decimal, ...],
    phase_2_shadow_percent: Decimal = DEFAULT_PHASE_2_SHADOW_PERCENT,
) -> GuardDecision:
    """Pure: the figures, the flags and the thresholds to what the guard does."""
    breaches = breaches_of(figures, thresholds)
    if not breaches:
        return GuardDecision(())
    if state.phase != Phase.READ_CUTOVER:
        return GuardDecision(
            breaches, moves_nothing_because=MOVES_NOTHING.format(phase=int(state.phase))
        )
    target = step_back_from(
        state, rollout_steps=rollout_steps, phase_2_shadow_percent=phase_2_shadow_percent
    )
    return GuardDecision(breaches, step_back_to=target)


def what_it_does(
    state: MigrationState, *, rollout_steps: tuple[Decimal, ...], thresholds: Thresholds
) -> str:
    """What the guard does in the phase the flags are in, in the phase page's words."""
    crossing = (
        f"mismatch rate above {_percent_text(thresholds.max_mismatch_rate)}, fallback rate "
        f"above {_percent_text(thresholds.max_fallback_rate)}, TigerBeetle error rate above "
        f"{_percent_text(thresholds.max_tb_error_rate)} or the oldest outbox write older than "
        f"{thresholds.max_outbox_age_s:.0f} s"
    )
    if state.phase != Phase.READ_CUTOVER:
        return (
            f"Checked every minute: a {crossing} raises an alert. In phase {int(state.phase)} "
            "it moves nothing: it steps back only phase 3's read rollout, and never moves "
            "where money is written (leaving phase 4 is a person's decision)."
        )
    target = step_back_from(
        state, rollout_steps=rollout_steps, phase_2_shadow_percent=DEFAULT_PHASE_2_SHADOW_PERCENT
    )
    to = (
        f"{criteria.percent(target.read_rollout_percent)}% read rollout"
        if target.phase == Phase.READ_CUTOVER
        else "phase 2 (shadow read)"
    )
    return (
        f"Checked every minute: a {crossing} steps the read rollout back to {to} without a "
        "person, audited as the guard with its figures, and raises an alert. It never moves "
        "where money is written."
    )


# --- the figures, read from the database and the outbox ------------------------------------


@dataclass(frozen=True)
class ReadTotals:
    """The read counters' running totals (all hours so far)."""

    reads_meant: int
    fallbacks: int
    tigerbeetle_errors: int


def read_totals() -> ReadTotals:
    routes = dict(
        ReadRouteCount.objects.filter(
            route__in=[ReadRouteCount.Route.TIGERBEETLE, ReadRouteCount.Route.FALLBACK]
        )
        .values("route")
        .annotate(total=Sum("count"))
        .values_list("route", "total")
    )
    errors = ReadFallbackCount.objects.filter(reason__in=TIGERBEETLE_ERROR_REASONS).aggregate(
        total=Sum("count")
    )["total"]
    fallbacks = int(routes.get(ReadRouteCount.Route.FALLBACK, 0))
    return ReadTotals(
        reads_meant=int(routes.get(ReadRouteCount.Route.TIGERBEETLE, 0)) + fallbacks,
        fallbacks=fallbacks,
        tigerbeetle_errors=int(errors or 0),
    )


def window_start(now: datetime, *, window_s: float) -> datetime:
    """The window's start: GUARD_WINDOW_S ago, but never before the last flag change."""
    start = now - timedelta(seconds=window_s)
    last_flip = FlagChange.objects.order_by("-changed_at").values_list("changed_at", flat=True)
    flipped = last_flip.first()
    return max(start, flipped) if flipped is not None else start


def comparisons_since(since: datetime) -> tuple[int, int]:
    """(compared, mismatched) by shadow comparisons and reconciliation runs since `since`,
    acknowledged legacy wallets set aside."""
    shadow = criteria.shadow_figures_since(since)
    compared = shadow.matched + shadow.mismatched
    mismatched = shadow.mismatched
    for day in criteria.daily_reconciliation_figures(since).values():
        checked = day.checked - day.set_aside
        compared += checked
        mismatched += checked - day.matched
    return compared, mismatched


def gather_figures(
    *, now: datetime, totals: ReadTotals, outbox: MirrorOutbox, window_s: float
) -> GuardFigures:
    start = window_start(now, window_s=window_s)
    baseline = GuardCheck.objects.filter(checked_at__gte=start).order_by("checked_at").first()
    compared, mismatched = comparisons_since(start)
    depth = criteria.outbox_depth_of(outbox)
    return GuardFigures(
        window_start=start.isoformat(),
        reads_since=baseline.checked_at.isoformat() if baseline else None,
        reads_meant=totals.reads_meant - baseline.reads_meant_total if baseline else 0,
        fallbacks=totals.fallbacks - baseline.fallbacks_total if baseline else 0,
        tigerbeetle_errors=(
            totals.tigerbeetle_errors - baseline.tigerbeetle_errors_total if baseline else 0
        ),
        compared=compared,
        mismatched=mismatched,
        outbox_age_s=float(depth.oldest_pending_age_s) if depth is not None else None,
    )


def phase_2_shadow_percent() -> Decimal:
    """The shadow share phase 2 had last (the audit's last non-zero value), else 10 %."""
    for value in FlagChange.objects.filter(flag_name=SHADOW_READ).values_list(
        "new_value", flat=True
    ):
        if Decimal(value or 0) > 0:
            return Decimal(value)
    return DEFAULT_PHASE_2_SHADOW_PERCENT


# --- the check, and its effects ------------------------------------------------------------


def check(*, mongo: MongoWalletStore, batches: LedgerBatches, outbox: MirrorOutbox) -> GuardCheck:
    """One check: the figures, the decision, its effect (a step back through
    `change_phase`, audited as the guard), the alerts, and the check's row."""
    now = timezone.now()
    state = current_state()
    totals = read_totals()
    row = GuardCheck(
        checked_at=now,
        phase=int(state.phase),
        read_rollout_percent=state.read_rollout_percent,
        reads_meant_total=totals.reads_meant,
        fallbacks_total=totals.fallbacks,
        tigerbeetle_errors_total=totals.tigerbeetle_errors,
    )
    if state.writes_paused:
        row.action, row.outcome = GuardCheck.Action.SKIPPED, "writes paused: a phase change runs"
        row.save()
        return row
    figures = gather_figures(
        now=now, totals=totals, outbox=outbox, window_s=settings.GUARD_WINDOW_S
    )
    decision = decide(
        figures,
        state=state,
        thresholds=Thresholds.from_settings(),
        rollout_steps=tuple(settings.READ_ROLLOUT_STEPS),
        phase_2_shadow_percent=phase_2_shadow_percent(),
    )
    row.figures = asdict(figures)
    row.breaches = [asdict(breach) for breach in decision.breaches]
    row.save()  # before a step back: its flag flip starts the next window after this check
    GuardCheck.objects.filter(checked_at__lt=now - timedelta(days=CHECKS_KEPT_DAYS)).delete()
    if not decision.breaches:
        return row
    if decision.step_back_to is None:
        row.action, row.outcome = GuardCheck.Action.ALERTED, decision.moves_nothing_because
        _alert_thresholds(decision, figures, state)
    else:
        _step_back(row, decision, figures, state, mongo=mongo, batches=batches)
    row.save(update_fields=["action", "outcome"])
    return row


def describe_state(state: MigrationState) -> str:
    if state.phase == Phase.READ_CUTOVER:
        return f"phase 3 at {criteria.percent(state.read_rollout_percent)}% read rollout"
    return f"phase {int(state.phase)}"


def _step_back(
    row: GuardCheck,
    decision: GuardDecision,
    figures: GuardFigures,
    state: MigrationState,
    *,
    mongo: MongoWalletStore,
    batches: LedgerBatches,
) -> None:
    target = decision.step_back_to
    assert target is not None
    crossed = "; ".join(str(breach) for breach in decision.breaches)
    move = f"{describe_state(state)} -> {describe_state(target)}"
    audit = {
        "figures": asdict(figures),
        "breaches": [asdict(breach) for breach in decision.breaches],
        "check_id": row.pk,
    }
    try:
        change_phase(
            target.phase,
            GUARD_ACTOR,
            mongo,
            batches,
            note=f"the guard stepped back ({crossed})"[:500],
            rollout_percent=target.read_rollout_percent,
            shadow_percent=target.shadow_read_percent,
            guard_figures=audit,
        )
    except InvalidPhaseChange as exc:
        row.action, row.outcome = GuardCheck.Action.REFUSED, f"{move} refused: {exc}"[:500]
        log.error("guard: step back %s refused: %s", move, exc)
    else:
        row.action, row.outcome = GuardCheck.Action.STEPPED_BACK, move
        log.warning("guard: stepped back %s (%s)", move, crossed)
    alerts.raise_alert(
        Alert.Kind.GUARD_STEP_BACK,
        case=f"{move} at {row.checked_at:%Y-%m-%d %H:%M} UTC",
        figures={**audit, "outcome": row.outcome},
        link=reverse("admin:migration-phase"),
    )


def _alert_thresholds(
    decision: GuardDecision, figures: GuardFigures, state: MigrationState
) -> None:
    """One open alert per threshold crossed while the guard moves nothing."""
    for breach in decision.breaches:
        alerts.raise_alert(
            Alert.Kind.GUARD_THRESHOLD,
            case=f"{breach.threshold} in phase {int(state.phase)}",
            figures={
                "breach": asdict(breach),
                "figures": asdict(figures),
                "moves_nothing_because": decision.moves_nothing_because,
            },
            link=reverse("admin:migration-phase"),
        )
