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
