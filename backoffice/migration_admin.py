"""Reconciliation runs (with their progress and a button to run one now) and mismatches (with
a re-check, and the transfer registry's repairs: backoffice/repair_views.py), the actions
taken on blockers, and shadow comparisons."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from backoffice import repair_views
from backoffice.admin_base import (
    CsvExportMixin,
    OpenByDefaultFilter,
    ReadOnlyAdmin,
    format_money,
    wallet_key_csv_columns,
)
from backoffice.blockers import recheck_wallet, unfinished_reconciliation
from backoffice.legacy_case_admin import (
    ACKNOWLEDGE_PERMISSION,
    acknowledge_legacy_cases,
    legacy_status,
    set_aside_pks,
    with_legacy_decisions,
)
from backoffice.links import wallet_url, when
from backoffice.selectors import BALANCE_WORDS
from domain.ids import WalletKey
from domain.money import from_minor_units
from migration.criteria import last_reconciliation
from migration.legacy_cases import AcknowledgedCases
from migration.models import (
    BlockerAction,
    ReconciliationMismatch,
    ReconciliationRun,
    ShadowComparison,
)


def duration(seconds: float | None) -> str:
    """A duration in seconds with a precision a person reads: "0.09 s", "12.3 s", "95 s"."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds:,.0f} s"


class _Money:
    """Display helpers: a mismatch's or comparison's minor units as money of its currency."""

    @staticmethod
    def _money(row: Any, field: str) -> str:
        value = getattr(row, field)
        return "—" if value is None else format_money(value, row.currency)

    @admin.display(description="MongoDB available")
    def mongo_available(self, row: Any) -> str:
        return self._money(row, "mongo_credit_minor")

    @admin.display(description="TigerBeetle available")
    def tb_available(self, row: Any) -> str:
        return self._money(row, "tb_credit_minor")

    @admin.display(description="MongoDB spent")
    def mongo_spent(self, row: Any) -> str:
        return self._money(row, "mongo_debit_minor")

    @admin.display(description="TigerBeetle spent")
    def tb_spent(self, row: Any) -> str:
        return self._money(row, "tb_debit_minor")

    @admin.display(description="MongoDB total received")
    def mongo_received(self, row: Any) -> str:
        return self._money(row, "mongo_historical_credit_minor")

    @admin.display(description="TigerBeetle total received")
    def tb_received(self, row: Any) -> str:
        return self._money(row, "tb_historical_credit_minor")

    @admin.display(description="MongoDB / TigerBeetle")
    def both_stores(self, row: Any) -> str:
        """The three fields of both stores in one cell (a list at 1280 px); for a transfer
        registry case, the registry's and TigerBeetle's amounts and what differs."""
        if getattr(row, "is_transfer_difference", False):
            return format_html(
                '<div class="money">registry {} / TigerBeetle {}</div>'
                '<div class="explain transfer-detail">{}</div>',
                self._money(row, "registered_amount_minor"),
                self._money(row, "tb_amount_minor"),
                row.detail,
            )
        lines = []
        for name, mongo_field, tb_field in (
            ("credit", "mongo_credit_minor", "tb_credit_minor"),
            ("debit", "mongo_debit_minor", "tb_debit_minor"),
            ("historical_credit", "mongo_historical_credit_minor", "tb_historical_credit_minor"),
        ):
            mongo, tb = self._money(row, mongo_field), self._money(row, tb_field)
            mark = "≠" if getattr(row, mongo_field) != getattr(row, tb_field) else "="
            lines.append((BALANCE_WORDS[name][0], mongo, mark, tb))
        return format_html_join(
            "", '<div class="money"><span class="explain">{}</span> {} {} {}</div>', lines
        )


class MismatchInline(_Money, admin.TabularInline):
    model = ReconciliationMismatch
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("kind", "wallet", "both_stores", "pending_mirror_entries", "resolved")
    readonly_fields = fields

    @admin.display(description="resolved")
    def resolved(self, row: ReconciliationMismatch) -> str:
        return when(row.resolved_at) or "not yet"

    @admin.display(description="wallet")
    def wallet(self, row: ReconciliationMismatch) -> str:
        return _wallet_link(row)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _wallet_link(row: ReconciliationMismatch | ShadowComparison) -> str:
    if isinstance(row, ReconciliationMismatch) and not row.client_id:
        return row.tb_account_id_hex
    key = WalletKey.from_row(row)
    return format_html('<a class="wallet-link" href="{}">{}</a>', wallet_url(key), key.describe())


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "progress",
        "checked",
        "matched",
        "mismatched",
        "rows_without_account",
        "accounts_without_row",
        "transfer_differences",
        "awaiting_backfill",
        "outside_share",
        "triggered_by",
    )
    date_hierarchy = "started_at"
    inlines = [MismatchInline]
    fields = (
        "started_at",
        "finished_at",
        "progress",
        "triggered_by",
        "checked",
        "matched",
        "mismatched",
        "rows_without_account",
        "accounts_without_row",
        "transfer_differences",
        "transfers_checked",
        "awaiting_backfill",
        "outside_share",
        "note",
        "error",
    )
    readonly_fields = fields
    change_list_template = "admin/migration/reconciliationrun/change_list.html"

    @admin.display(description="progress")
    def progress(self, run: ReconciliationRun) -> str:
        """Queued, running (wallets checked so far of the total), or finished (how long)."""
        if run.status == "finished":
            return f"finished in {duration(run.duration_s)}"
        if run.status == "queued":
            return "queued"
        return (
            f"running: {run.compared:,} of {run.wallets_total:,} wallets, "
            f"{run.transfers_checked:,} transfers"
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The runs; refreshed while one is queued or running."""
        return super().changelist_view(
            request, {**(extra_context or {}), "running_run": unfinished_reconciliation()}
        )


@admin.register(BlockerAction)
class BlockerActionAdmin(ReadOnlyAdmin):
    """The audit trail of the actions people took on what blocks the migration."""

    list_display = ("at", "actor", "action", "wallet", "outcome")
    list_filter = ("action",)
    search_fields = ("client_id__exact", "actor__exact")
    search_help_text = "Exact client id or person (case-sensitive)."

    @admin.display(description="wallet", ordering="client_id")
    def wallet(self, row: BlockerAction) -> str:
        return WalletKey.from_row(row).describe() if row.client_id else ""


class RecheckWalletsAction(admin.ModelAdmin):
    """The list's action "re-check these wallets", for those allowed to re-check: wherever
    rows name differing wallets (reconciliation mismatches, shadow comparisons)."""

    actions = ["recheck_wallets"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("migration.recheck_wallet"):
            actions.pop("recheck_wallets", None)
        return actions

    @admin.action(description="Re-check these wallets in both stores now")
    def recheck_wallets(self, request: HttpRequest, queryset: QuerySet) -> None:
        keys = {WalletKey.from_row(row) for row in queryset.exclude(client_id="")}
        for key in sorted(keys, key=WalletKey.sort_key):
            agree, message = recheck_wallet(key, request.user.get_username())
            self.message_user(request, message, messages.SUCCESS if agree else messages.WARNING)


class MismatchStatusFilter(OpenByDefaultFilter):
    """Open (the default): found by the last reconciliation and not resolved by a re-check
    since. The rest is history."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("open", "open (last run, not resolved)"),
            ("legacy", "acknowledged legacy cases (last run, set aside)"),
            ("resolved", "resolved by a re-check or a repair"),
            ("history", "earlier runs"),
            ("all", "all"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.selected()
        last = last_reconciliation()
        if value in ("open", "legacy"):
            if last is None:
                return queryset.none()
            last_open = queryset.filter(run=last, resolved_at__isnull=True)
            set_aside = set_aside_pks(last_open, AcknowledgedCases())
            if value == "legacy":
                return last_open.filter(pk__in=set_aside)
            return last_open.exclude(pk__in=set_aside)
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        if value == "history":
            return queryset.filter(~Q(run=last)) if last else queryset
        return queryset


def _amount(row: ReconciliationMismatch, field: str) -> str:
    value = getattr(row, field)
    return "" if value is None or not row.currency else str(from_minor_units(value, row.currency))


@admin.register(ReconciliationMismatch)
class ReconciliationMismatchAdmin(_Money, RecheckWalletsAction, CsvExportMixin, ReadOnlyAdmin):
    list_display = (
        "found",
        "kind",
        "wallet",
        "both_stores",
        "pending_mirror_entries",
        "resolution",
    )
    list_filter = (MismatchStatusFilter, "kind", "currency")
    search_fields = ("client_id__exact",)  # through its index ("=client_id" is iexact)
    search_help_text = "Exact client id (case-sensitive)."
    list_select_related = ("run",)
    actions = ["recheck_wallets", acknowledge_legacy_cases]
    csv_columns = (
        ("run_started_at", lambda row: row.run.started_at.isoformat()),
        ("kind", lambda row: row.kind),
        *wallet_key_csv_columns(),
        ("tigerbeetle_account_id", lambda row: row.tb_account_id_hex),
        ("mongo_available", lambda row: _amount(row, "mongo_credit_minor")),
        ("tigerbeetle_available", lambda row: _amount(row, "tb_credit_minor")),
        ("mongo_spent", lambda row: _amount(row, "mongo_debit_minor")),
        ("tigerbeetle_spent", lambda row: _amount(row, "tb_debit_minor")),
        ("mongo_total_received", lambda row: _amount(row, "mongo_historical_credit_minor")),
        ("tigerbeetle_total_received", lambda row: _amount(row, "tb_historical_credit_minor")),
        ("pending_mirror_entries", lambda row: row.pending_mirror_entries),
        ("resolved_at", lambda row: row.resolved_at.isoformat() if row.resolved_at else ""),
        ("resolved_by", lambda row: row.resolved_by),
        # The transfer registry's cases (appended: earlier columns keep their positions).
        ("transaction_id", lambda row: row.transaction_id),
        ("tigerbeetle_transfer_id", lambda row: row.tb_transfer_id_hex),
        ("registered_amount", lambda row: _amount(row, "registered_amount_minor")),
        ("tigerbeetle_amount", lambda row: _amount(row, "tb_amount_minor")),
        ("detail", lambda row: row.detail),
    )

    change_form_template = "admin/migration/reconciliationmismatch/change_form.html"
    # A case's page: money as money, the ids support quotes, what became of it.
    fields = (
        "found",
        "kind",
        "wallet",
        "both_stores",
        "transaction_id",
        "tb_transfer_id_hex",
        "tb_account",
        "pending_mirror_entries",
        "resolution",
    )
    readonly_fields = fields

    @admin.display(description="TigerBeetle account id")
    def tb_account(self, row: ReconciliationMismatch) -> str:
        return row.tb_account_id_hex or "—"

    def get_urls(self) -> list[Any]:
        repair = path(
            "<int:mismatch_pk>/repair/",
            self.admin_site.admin_view(repair_views.repair_view),
            name="migration_reconciliationmismatch_repair",
        )
        return [repair, *self.csv_urls(), *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """A case: its wallet's re-check and, for a transfer registry case, its repair."""
        mismatch = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if mismatch is not None:
            extra.update(repair_views.case_context(request, mismatch))
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="found", ordering="run__started_at")
    def found(self, row: ReconciliationMismatch) -> str:
        return when(row.run.started_at)

    @admin.display(description="wallet", ordering="client_id")
    def wallet(self, row: ReconciliationMismatch) -> str:
        return _wallet_link(row)

    @admin.display(description="resolved")
    def resolution(self, row: ReconciliationMismatch) -> str:
        if row.resolved_at is None:
            return legacy_status(row) or "not yet"
        return f"{row.resolved_by}, {when(row.resolved_at)}"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_legacy_decisions(super().get_queryset(request))

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # the re-check: RecheckWalletsAction's rule
        if not request.user.has_perm(ACKNOWLEDGE_PERMISSION):
            actions.pop("acknowledge_legacy_cases", None)
        return actions


@admin.register(ShadowComparison)
class ShadowComparisonAdmin(_Money, RecheckWalletsAction, ReadOnlyAdmin):
    list_display = (
        "compared_at",
        "wallet",
        "outcome",
        "different",
        "both_stores",
        "mongo_read_time",
        "tb_read_time",
    )
    fields = (
        "compared_at",
        "wallet",
        "outcome",
        "different",
        "both_stores",
        "mongo_read_time",
        "tb_read_time",
        "mongo_version",
        "detail",
    )
    readonly_fields = fields

    @admin.display(description="MongoDB wallet version read")
    def mongo_version(self, row: ShadowComparison) -> str:
        return f"{row.wallet_seq:,}"

    # By date through a filter, not a date hierarchy, which reads every comparison's date
    # on each load (there is one a shadow read).
    list_filter = ("outcome", "compared_at")
    search_fields = ("client_id__exact",)  # through its index ("=client_id" is iexact)
    search_help_text = "Exact client id (case-sensitive)."

    @admin.display(description="differs in")
    def different(self, row: ShadowComparison) -> str:
        names = [name for name in row.mismatched_fields.split(",") if name]
        return ", ".join(BALANCE_WORDS.get(name.strip(), (name,))[0] for name in names)

    @admin.display(description="wallet", ordering="client_id")
    def wallet(self, row: ShadowComparison) -> str:
        key = WalletKey.from_row(row)
        return format_html(
            '<a class="wallet-link" href="{}">{}</a>', wallet_url(key), key.describe()
        )

    @admin.display(description="MongoDB read time", ordering="mongo_latency_us")
    def mongo_read_time(self, row: ShadowComparison) -> str:
        return milliseconds(row.mongo_latency_us)

    @admin.display(description="TigerBeetle read time", ordering="tb_latency_us")
    def tb_read_time(self, row: ShadowComparison) -> str:
        return milliseconds(row.tb_latency_us)


def milliseconds(microseconds: int | None) -> str:
    """A read's time as people compare them: "1.23 ms"."""
    return "—" if microseconds is None else f"{microseconds / 1000:,.2f} ms"
