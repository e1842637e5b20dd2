"""The migration's figures computed from what was recorded (database rows, the outbox), not
from one process's memory: the success criteria of the seed, and Prometheus gauges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from ledger.models import ReadRouteCount, ReconciliationRun, ShadowComparison


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


def outbox_depth() -> dict[str, int] | None:
    """Entries waiting for the mirror by state, and the oldest pending one's age (None when
    MongoDB does not answer)."""
    from ledger import errors
    from ledger.service import mongo_outbox

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
    mismatched = run.mismatched if run else 0
    detail = (
        f"{depth['parked']} parked outbox entries, {mismatched} wallets mismatched in the last run"
    )
    return depth["parked"] + mismatched, detail


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
    if shadow.mongo_latency_us and shadow.tb_latency_us:
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


def daily_shadow_figures(days: int = 14) -> list[dict[str, object]]:
    """Per day: match rate and average read latency of each store (for the charts)."""
    from django.db.models.functions import TruncDate

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
