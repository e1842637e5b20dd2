"""What the migration observes and keeps: shadow comparisons, read routes, reconciliations,
and the actions people took on what blocks it.

The dashboard's success criteria are computed from these rows (not from process-local
metrics), so they survive restarts and agree across web and worker processes.

They were the ledger app's models: their tables keep the `ledger_` names they were created
with (`Meta.db_table`), and migration/migrations/0001 took them over in Django's state only.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import F
from django.utils import timezone
from django.utils.formats import date_format


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

    def __str__(self) -> str:
        return f"shadow read of {self.client_id} {self.currency}: {self.outcome}"


def bump_this_hour(model: type[models.Model], **key: str) -> None:
    """Add one to the current hour's row of an hourly counter (`hour`, its key, `count`):
    an UPDATE, or the row created first; a racing creator's row is updated instead."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    rows = model._default_manager.filter(hour=hour, **key)
    if rows.update(count=F("count") + 1):
        return
    _, created = model._default_manager.get_or_create(hour=hour, **key, defaults={"count": 1})
    if not created:
        rows.update(count=F("count") + 1)


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
        bump_this_hour(cls, route=route)


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
    outside_share = models.PositiveIntegerField(
        default=0,
        help_text="wallets of clients outside the dual-write share: TigerBeetle is not kept "
        "current for them, so they are not compared",
    )
    duration_s = models.FloatField(null=True, blank=True)
    triggered_by = models.CharField(max_length=150, default="schedule")
    error = models.TextField(blank=True, default="")
    note = models.CharField(max_length=200, blank=True, default="")
    wallets_total = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "the wallets the run compares (MongoDB's count when it started), for its progress; "
            "none while it is queued"
        ),
    )
    transfers_checked = models.PositiveIntegerField(
        default=0, help_text="registered transfers and voids looked up in TigerBeetle"
    )
    transfer_differences = models.PositiveIntegerField(
        default=0, help_text="differences between the transfer registry and TigerBeetle"
    )
    compared_every_wallet = models.BooleanField(
        default=False,
        help_text="the run compared every MongoDB wallet with TigerBeetle (each at some moment "
        "after it started): phase 4's entry then compares only the wallets changed since",
    )

    class Meta:
        db_table = "ledger_reconciliationrun"
        ordering = ["-started_at"]
        permissions = [
            ("view_migration_dashboard", "Can view the migration dashboard"),
            ("recheck_wallet", "Can re-check a wallet against both stores"),
            ("run_reconciliation", "Can run a reconciliation now"),
            ("requeue_parked_entries", "Can requeue parked outbox entries for the mirror"),
            (
                "repair_transfer_registry",
                "Can repair the transfer registry from what TigerBeetle holds",
            ),
        ]

    def __str__(self) -> str:
        return f"reconciliation {_when(self.started_at)}: {self.mismatched} mismatched"

    @property
    def compared(self) -> int:
        """Wallets looked at so far: checked, or set aside as awaiting the backfill."""
        return self.checked + self.awaiting_backfill + self.outside_share

    @property
    def status(self) -> str:
        """queued (no worker took it yet), running, or finished."""
        if self.finished_at is not None:
            return "finished"
        return "queued" if self.wallets_total is None else "running"


class ReconciliationMismatch(models.Model):
    """One wallet (or registry entry) that disagrees, with both sides' values."""

    class Kind(models.TextChoices):
        BALANCE = "balance"  # the three fields differ
        HELD = "held"  # posted amounts agree, the held ones (open holds) do not
        NOT_IN_TIGERBEETLE = "not_in_tb"  # MongoDB wallet with no registry row / account
        ROW_WITHOUT_ACCOUNT = "row_no_account"  # registry row, no TigerBeetle account
        ACCOUNT_WITHOUT_ROW = "account_no_row"  # TigerBeetle wallet account, no registry row
        # The transfer registry against TigerBeetle (migration/transfer_check.py):
        # registered transfer (or void) TB does not hold
        TRANSFER_MISSING = "transfer_missing", "registered transfer TigerBeetle lacks"
        # TB holds it with another amount, as another kind or on another wallet
        TRANSFER_DIFFERS = "transfer_differs", "transfer TigerBeetle holds otherwise"
        # a wallet transfer TB holds that no registry row names
        NOT_REGISTERED = "not_registered", "transfer not registered"
        # TB holds the void of a transfer the registry has as posted
        VOID_NOT_MARKED = "void_not_marked", "void not in the registry"

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
    mongo_held_minor = models.BigIntegerField(null=True, blank=True)
    tb_held_minor = models.BigIntegerField(null=True, blank=True)
    pending_mirror_entries = models.PositiveIntegerField(default=0)
    transaction_id = models.CharField(
        max_length=128, blank=True, default="", help_text="the registered transaction, if any"
    )
    tb_transfer_id_hex = models.CharField(
        "TigerBeetle transfer id", max_length=32, blank=True, default=""
    )
    registered_amount_minor = models.BigIntegerField(null=True, blank=True)
    tb_amount_minor = models.BigIntegerField(null=True, blank=True)
    detail = models.CharField(
        max_length=300, blank=True, default="", help_text="what differs, in words"
    )
    resolved_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when a re-check found both stores agreeing, or a repair mended it",
    )
    resolved_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "ledger_reconciliationmismatch"
        verbose_name_plural = "reconciliation mismatches"

    # The kinds about one wallet's balance (a re-check resolves them) and about the transfer
    # registry (a repair does, where one exists).
    BALANCE_KINDS = ("balance", "not_in_tb")
    TRANSFER_KINDS = ("transfer_missing", "transfer_differs", "not_registered", "void_not_marked")

    def __str__(self) -> str:
        wallet = f" of {self.client_id} {self.country} {self.currency}" if self.client_id else ""
        return f"{self.get_kind_display()}{wallet}"

    @property
    def is_transfer_difference(self) -> bool:
        return self.kind in self.TRANSFER_KINDS


class BlockerAction(models.Model):
    """One action a person took on something that blocks the migration (requeue parked
    entries, run a reconciliation, re-check a wallet, repair the transfer registry): who,
    when, on what, and what came of it. The actions' audit trail."""

    class Action(models.TextChoices):
        REQUEUE_PARKED = "requeue_parked", "requeued parked outbox entries"
        RUN_RECONCILIATION = "run_reconciliation", "queued a reconciliation"
        RECHECK_WALLET = "recheck_wallet", "re-checked a wallet"
        REGISTER_TRANSFER = "register_transfer", "registered a transfer TigerBeetle holds"
        MARK_VOIDED = "mark_voided", "marked a transfer voided as TigerBeetle holds it"
        CORRECT_AMOUNT = "correct_amount", "corrected a registered amount to TigerBeetle's"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=20, choices=Action.choices)
    client_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    country = models.CharField(max_length=3, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    issuer = models.CharField(max_length=128, blank=True, default="")
    mismatch = models.ForeignKey(
        ReconciliationMismatch,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="actions",
        help_text="the case it acted on, if one",
    )
    run = models.ForeignKey(
        ReconciliationRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="actions",
        help_text="the reconciliation it queued",
    )
    outcome = models.CharField(max_length=500, help_text="what came of it, as the person saw it")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "action on a blocker"
        verbose_name_plural = "actions on blockers"

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor}"


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


class ReadFallbackCount(models.Model):
    """Phase-3 fallbacks per hour by their reason (`error`, `breaker_open`: TigerBeetle failed
    the read; `not_in_tigerbeetle`: it lacks the wallet). The guard's TigerBeetle error rate
    is the first two over the reads meant for TigerBeetle (`ReadRouteCount`)."""

    hour = models.DateTimeField()
    reason = models.CharField(max_length=24)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "reason"], name="one_fallback_count_per_hour")
        ]

    @classmethod
    def bump(cls, reason: str) -> None:
        bump_this_hour(cls, reason=reason)


class GuardCheck(models.Model):
    """One minute's check of the guard (`migration.guard`): the read counters as they stood
    (running totals, so a window's rates are the difference between two checks), the figures
    of its window, the thresholds crossed and what it did."""

    class Action(models.TextChoices):
        NONE = "none", "nothing crossed"
        ALERTED = "alerted", "alerted only (this phase is not stepped back by the guard)"
        STEPPED_BACK = "stepped_back", "stepped the read rollout back"
        REFUSED = "refused", "a step back was refused"
        SKIPPED = "skipped", "skipped (a phase change was running)"

    checked_at = models.DateTimeField(default=timezone.now, db_index=True)
    phase = models.PositiveSmallIntegerField()
    read_rollout_percent = models.DecimalField(max_digits=4, decimal_places=1, default=0)
    reads_meant_total = models.BigIntegerField(
        default=0, help_text="reads meant for TigerBeetle so far (served by it, or fallen back)"
    )
    fallbacks_total = models.BigIntegerField(default=0)
    tigerbeetle_errors_total = models.BigIntegerField(default=0)
    figures = models.JSONField(default=dict, blank=True)
    breaches = models.JSONField(default=list, blank=True)
    action = models.CharField(max_length=12, choices=Action.choices, default=Action.NONE)
    outcome = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-checked_at", "-id"]
        verbose_name = "guard check"

    def __str__(self) -> str:
        return f"guard {_when(self.checked_at)}: {self.get_action_display()}"


class Alert(models.Model):
    """Something that means money may be wrong, once per case: one open alert per kind and
    case (a wallet, a threshold, a step back), however often it is seen again; the database
    enforces it (a partial unique constraint), so two workers seeing the same mismatch make
    one alert. It is sent to the webhook when it opens (and again each minute until the
    webhook takes it), counted while it stays open, and resolved by a person
    (`migration.resolve_alert`)."""

    class Kind(models.TextChoices):
        SHADOW_MISMATCH = "shadow_mismatch", "shadow read mismatch"
        RECONCILIATION_MISMATCH = "reconciliation_mismatch", "reconciliation mismatch"
        RECONCILIATION_RUN = "reconciliation_run", "reconciliation found problems"
        GUARD_STEP_BACK = "guard_step_back", "the guard stepped the read rollout back"
        GUARD_THRESHOLD = "guard_threshold", "a guard threshold crossed"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    case = models.CharField(
        max_length=400, help_text="what it is about: a wallet, a threshold, a step back"
    )
    client_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    country = models.CharField(max_length=3, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    issuer = models.CharField(max_length=128, blank=True, default="")
    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    count = models.PositiveIntegerField(default=1, help_text="times seen while open")
    figures = models.JSONField(default=dict, blank=True, help_text="as last seen")
    link = models.CharField(
        max_length=500, blank=True, default="", help_text="the case's admin page (a path)"
    )
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="when the webhook took it (none: not delivered yet)"
    )
    send_attempts = models.PositiveSmallIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    resolution = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "case"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_alert_per_case",
            )
        ]
        permissions = [("resolve_alert", "Can resolve an alert")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.case}"


def _when(moment: datetime) -> str:
    """A time as every page shows it: the project's one format, with its zone."""
    return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")
