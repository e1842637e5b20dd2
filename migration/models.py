"""What the migration observes and keeps: shadow comparisons, read routes, reconciliations.

The dashboard's success criteria are computed from these rows (not from process-local
metrics), so they survive restarts and agree across web and worker processes.

They were the ledger app's models: their tables keep the `ledger_` names they were created
with (`Meta.db_table`), and migration/migrations/0001 took them over in Django's state only.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F
from django.utils import timezone


class ShadowComparison(models.Model):
    """Phase 2: one sampled balance read, compared on TigerBeetle off the request path."""

    class Outcome(models.TextChoices):
        MATCH = "match"
        MISMATCH = "mismatch"
        MISSING = "missing"  # the wallet is not (yet) in TigerBeetle
        SKIPPED = "skipped"  # no consistent pair could be read (e.g. TigerBeetle down)

    client_id = models.CharField(max_length=128, db_index=True)
    country = models.CharField(max_length=3)
    currency = models.CharField(max_length=3)
    issuer = models.CharField(max_length=128, blank=True, default="")
    wallet_seq = models.BigIntegerField(help_text="the MongoDB wallet_seq the read saw")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    mongo_credit_minor = models.BigIntegerField()
    mongo_debit_minor = models.BigIntegerField()
    mongo_historical_credit_minor = models.BigIntegerField()
    tb_credit_minor = models.BigIntegerField(null=True, blank=True)
    tb_debit_minor = models.BigIntegerField(null=True, blank=True)
    tb_historical_credit_minor = models.BigIntegerField(null=True, blank=True)
    mismatched_fields = models.CharField(max_length=100, blank=True, default="")
    mongo_latency_us = models.PositiveIntegerField(null=True, blank=True)
    tb_latency_us = models.PositiveIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True, default="")
    compared_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "ledger_shadowcomparison"
        ordering = ["-compared_at"]


class ReadRouteCount(models.Model):
    """Reads per hour by the route they took; fallback rate = fallback / tigerbeetle."""

    class Route(models.TextChoices):
        MONGO = "mongo"  # not in the rollout (or phase < 3)
        TIGERBEETLE = "tigerbeetle"  # served by TigerBeetle
        FALLBACK = "fallback"  # meant for TigerBeetle, served by MongoDB after a failure
        READ_YOUR_WRITES = "ryw"  # meant for TigerBeetle, mirror behind: served by MongoDB

    hour = models.DateTimeField()
    route = models.CharField(max_length=12, choices=Route.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        db_table = "ledger_readroutecount"
        constraints = [models.UniqueConstraint(fields=["hour", "route"], name="one_count_per_hour")]

    @classmethod
    def bump(cls, route: str) -> None:
        hour = timezone.now().replace(minute=0, second=0, microsecond=0)
        updated = cls.objects.filter(hour=hour, route=route).update(count=F("count") + 1)
        if not updated:
            _, created = cls.objects.get_or_create(hour=hour, route=route, defaults={"count": 1})
            if not created:
                cls.objects.filter(hour=hour, route=route).update(count=F("count") + 1)


class ReconciliationRun(models.Model):
    """One comparison of every wallet in both stores, and of the registry with TigerBeetle."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    checked = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0)
    mismatched = models.PositiveIntegerField(default=0)
    rows_without_account = models.PositiveIntegerField(default=0)
    accounts_without_row = models.PositiveIntegerField(default=0)
    awaiting_backfill = models.PositiveIntegerField(
        default=0, help_text="legacy wallets not imported yet: not compared, not mismatches"
    )
    duration_s = models.FloatField(null=True, blank=True)
    triggered_by = models.CharField(max_length=150, default="schedule")
    error = models.TextField(blank=True, default="")
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "ledger_reconciliationrun"
        ordering = ["-started_at"]
        permissions = [
            ("view_migration_dashboard", "Can view the migration dashboard"),
            ("recheck_wallet", "Can re-check a wallet against both stores"),
        ]

    def __str__(self) -> str:
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M}: {self.mismatched} mismatched"


class ReconciliationMismatch(models.Model):
    """One wallet (or registry entry) that disagrees, with both sides' values."""

    class Kind(models.TextChoices):
        BALANCE = "balance"  # the three fields differ
        NOT_IN_TIGERBEETLE = "not_in_tb"  # MongoDB wallet with no registry row / account
        ROW_WITHOUT_ACCOUNT = "row_no_account"  # registry row, no TigerBeetle account
        ACCOUNT_WITHOUT_ROW = "account_no_row"  # TigerBeetle wallet account, no registry row

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="mismatches")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    client_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    country = models.CharField(max_length=3, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    issuer = models.CharField(max_length=128, blank=True, default="")
    tb_account_id_hex = models.CharField(max_length=32, blank=True, default="")
    mongo_credit_minor = models.BigIntegerField(null=True, blank=True)
    mongo_debit_minor = models.BigIntegerField(null=True, blank=True)
    mongo_historical_credit_minor = models.BigIntegerField(null=True, blank=True)
    tb_credit_minor = models.BigIntegerField(null=True, blank=True)
    tb_debit_minor = models.BigIntegerField(null=True, blank=True)
    tb_historical_credit_minor = models.BigIntegerField(null=True, blank=True)
    pending_mirror_entries = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="when a re-check found both stores agreeing"
    )
    resolved_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "ledger_reconciliationmismatch"
        verbose_name_plural = "reconciliation mismatches"


class AcknowledgedLegacyCase(models.Model):
    """Support's decision on a legacy wallet whose own MongoDB fields disagree (credit !=
    historical credit - debit): it cannot be fixed from the back-office, so support records
    who decided, when and why. The backfill imported such a wallet with its available credit
    and its debits, so TigerBeetle's historical credit differs from MongoDB's by the wallet's
    own excess, and by nothing else: a mismatch or shadow comparison of the wallet is set
    aside (not counted, but listed) only while that is still all that differs
    (`migration.legacy_cases`). One decision per wallet; it is never edited or deleted."""

    client_id = models.CharField(max_length=128, db_index=True)
    country = models.CharField(max_length=3)
    currency = models.CharField(max_length=3)
    issuer = models.CharField(max_length=128, blank=True, default="")
    historical_excess_minor = models.BigIntegerField(
        help_text="MongoDB's historical credit - (credit + debit): what the legacy data lacks"
    )
    mongo_credit_minor = models.BigIntegerField()
    mongo_debit_minor = models.BigIntegerField()
    mongo_historical_credit_minor = models.BigIntegerField()
    mismatch = models.ForeignKey(
        ReconciliationMismatch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="acknowledgments",
        help_text="the mismatch it was acknowledged from",
    )
    reason = models.TextField(help_text="why the difference is accepted, in support's words")
    acknowledged_by = models.CharField(max_length=150)
    acknowledged_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-acknowledged_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client_id", "country", "currency", "issuer"],
                name="one_decision_per_legacy_wallet",
            ),
            models.CheckConstraint(
                condition=~models.Q(historical_excess_minor=0), name="legacy_case_has_an_excess"
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="legacy_case_has_a_reason"),
        ]
        permissions = [
            (
                "acknowledge_legacy_case",
                "Can acknowledge a legacy wallet whose MongoDB fields disagree",
            )
        ]

    def __str__(self) -> str:
        return f"legacy case {self.client_id} {self.currency} by {self.acknowledged_by}"
