"""Recorded data for the phase gates' criteria, dated in the past: days are simulated by rows
as the migration records them (reconciliation runs, shadow comparisons, read routes, the
flags' audit), never by waiting."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta

from django.db.models import F
from django.utils import timezone

from domain.ids import WalletKey
from flags.models import FlagChange
from migration.legacy_cases import acknowledge
from migration.models import (
    AcknowledgedLegacyCase,
    ReadRouteCount,
    ReconciliationMismatch,
    ReconciliationRun,
    ShadowComparison,
)


def on_day(days_ago: int) -> datetime:
    """A moment of the day `days_ago` days before today: now for today, noon before."""
    if days_ago == 0:
        return timezone.now()
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time(12)))


def reconciled(days: Iterable[int], *, checked: int = 10, mismatched: int = 0) -> None:
    """One finished reconciliation run on each of those days."""
    for days_ago in days:
        at = on_day(days_ago)
        ReconciliationRun.objects.create(
            started_at=at,
            finished_at=at,
            checked=checked,
            matched=checked - mismatched,
            mismatched=mismatched,
        )


def shadow_timed(days: Iterable[int], *, tb_us: int, mongo_us: int, reads: int = 1) -> None:
    """`reads` matching shadow comparisons on each of those days, with both latencies."""
    rows = [
        ShadowComparison(
            client_id="timed",
            country="USA",
            currency="USD",
            wallet_seq=1,
            outcome=ShadowComparison.Outcome.MATCH,
            mongo_credit_minor=1,
            mongo_debit_minor=0,
            mongo_historical_credit_minor=1,
            tb_credit_minor=1,
            tb_debit_minor=0,
            tb_historical_credit_minor=1,
            mongo_latency_us=mongo_us,
            tb_latency_us=tb_us,
            compared_at=on_day(days_ago),
        )
        for days_ago in days
        for _ in range(reads)
    ]
    ShadowComparison.objects.bulk_create(rows)


def read_routes(days: Iterable[int], *, tigerbeetle: int = 1000, fallback: int = 0) -> None:
    """Phase-3 reads counted on each of those days (in its noon hour)."""
    for days_ago in days:
        hour = on_day(days_ago).replace(minute=0, second=0, microsecond=0)
        for route, count in (("tigerbeetle", tigerbeetle), ("fallback", fallback)):
            if count:
                row, _ = ReadRouteCount.objects.get_or_create(hour=hour, route=route)
                ReadRouteCount.objects.filter(pk=row.pk).update(count=F("count") + count)


def flags_unchanged_for(days: int) -> None:
    """As if every flag flip so far had been made `days` days ago (the rollout share of each
    day is read from the flags' audit)."""
    FlagChange.objects.update(changed_at=timezone.now() - timedelta(days=days))


def criteria_held(days: int = 7) -> None:
    """Every step's criterion held on each of the last `days` days before today, with the
    flags as they are now all along: the reconciliation matched every wallet, TigerBeetle
    read in a tenth of MongoDB's time, no read fell back."""
    past = range(1, days + 1)
    reconciled(past)
    shadow_timed(past, tb_us=100, mongo_us=1000)
    read_routes(past)
    flags_unchanged_for(days + 1)


def legacy_mismatch(
    *, run: ReconciliationRun | None = None, key: WalletKey | None = None
) -> ReconciliationMismatch:
    """A legacy wallet whose MongoDB fields disagree (total received 150, available 100,
    spent 0), imported with its available and spent: TigerBeetle's total received is 100."""
    if run is None:
        run = ReconciliationRun.objects.create(
            finished_at=timezone.now(), checked=100_000, matched=99_999, mismatched=1
        )
    key = key or WalletKey("legacy-client", "USA", "USD", None)
    return ReconciliationMismatch.objects.create(
        run=run,
        kind=ReconciliationMismatch.Kind.BALANCE,
        **key.as_columns(),
        mongo_credit_minor=100,
        mongo_debit_minor=0,
        mongo_historical_credit_minor=150,
        tb_credit_minor=100,
        tb_debit_minor=0,
        tb_historical_credit_minor=100,
    )


def acknowledged(mismatch: ReconciliationMismatch) -> AcknowledgedLegacyCase:
    """Support's decision on a legacy mismatch, as `migration.legacy_cases.acknowledge`
    records it."""
    return acknowledge(mismatch, actor="support-lead", reason="legacy bug of 2019, ticket 42")
