"""Reconciliation runs and mismatches (with a re-check), and shadow comparisons."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from backoffice.admin_base import (
    CsvExportMixin,
    ReadOnlyAdmin,
    format_money,
    wallet_key_csv_columns,
)
from backoffice.legacy_case_admin import (
    ACKNOWLEDGE_PERMISSION,
    acknowledge_legacy_cases,
    legacy_status,
    set_aside_pks,
    with_legacy_decisions,
)
from backoffice.links import wallet_url
from backoffice.selectors import BALANCE_WORDS, FIELDS
from domain.ids import WalletKey
from domain.money import from_minor_units
from domain.wallets import WalletBalance
from migration.criteria import last_reconciliation
from migration.legacy_cases import AcknowledgedCases
from migration.models import ReconciliationMismatch, ReconciliationRun, ShadowComparison
from migration.runtime import process_runtime


def _describe_balance(balance: WalletBalance | None, missing: str) -> str:
    if balance is None:
        return missing
    currency = balance.key.currency
    return ", ".join(
        f"{format_money(value, currency)} {BALANCE_WORDS[name][0]}"
        for name, value in zip(FIELDS, balance.fields_minor(), strict=True)
    )


def recheck_wallet(key: WalletKey, actor: str) -> tuple[bool, str]:
    """Re-check one wallet in both stores now (mirroring it first). When they agree, the
    wallet's open mismatches are marked resolved by `actor`. Answers (agree, message)."""
    mongo, tb = process_runtime().reconciliation().recheck(key)
    if mongo is not None and mongo == tb:
        ReconciliationMismatch.objects.filter(**key.as_columns(), resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=actor
        )
        return True, f"Re-check of wallet {key.describe()}: both stores agree now."
    return False, (
        f"Re-check of wallet {key.describe()}: still different. MongoDB: "
        f"{_describe_balance(mongo, 'no wallet')}. TigerBeetle: "
        f"{_describe_balance(tb, 'no account')}."
    )


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
        """The three fields of both stores in one cell (a list at 1280 px)."""
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
    fields = ("kind", "wallet", "both_stores", "pending_mirror_entries", "resolved_at")
    readonly_fields = fields

    @admin.display(description="wallet")
    def wallet(self, row: ReconciliationMismatch) -> str:
        return _wallet_link(row)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _wallet_link(row: ReconciliationMismatch) -> str:
    if not row.client_id:
        return row.tb_account_id_hex
    key = WalletKey.from_row(row)
    return format_html('<a class="wallet-link" href="{}">{}</a>', wallet_url(key), key.describe())


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "checked",
        "matched",
        "mismatched",
        "rows_without_account",
        "accounts_without_row",
        "awaiting_backfill",
        "duration_s",
        "triggered_by",
    )
    date_hierarchy = "started_at"
    inlines = [MismatchInline]


class MismatchStatusFilter(admin.SimpleListFilter):
    """Open (the default): found by the last reconciliation and not resolved by a re-check
    since. The rest is history."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("open", "open (last run, not resolved)"),
            ("legacy", "acknowledged legacy cases (last run, set aside)"),
            ("resolved", "resolved by a re-check"),
            ("history", "earlier runs"),
            ("all", "all"),
        ]

    def choices(self, changelist: Any) -> Any:
        value = self.value() or "open"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or "open"
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
class ReconciliationMismatchAdmin(_Money, CsvExportMixin, ReadOnlyAdmin):
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
    )

    def get_urls(self) -> list[Any]:
        return [*self.csv_urls(), *super().get_urls()]

    @admin.display(description="found", ordering="run__started_at")
    def found(self, row: ReconciliationMismatch) -> str:
        return f"{row.run.started_at:%Y-%m-%d %H:%M}"

    @admin.display(description="wallet", ordering="client_id")
    def wallet(self, row: ReconciliationMismatch) -> str:
        return _wallet_link(row)

    @admin.display(description="resolved")
    def resolution(self, row: ReconciliationMismatch) -> str:
        if row.resolved_at is None:
            return legacy_status(row)
        return f"{row.resolved_by}, {row.resolved_at:%Y-%m-%d %H:%M}"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_legacy_decisions(super().get_queryset(request))

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("migration.recheck_wallet"):
            actions.pop("recheck_wallets", None)
        if not request.user.has_perm(ACKNOWLEDGE_PERMISSION):
            actions.pop("acknowledge_legacy_cases", None)
        return actions

    @admin.action(description="Re-check these wallets in both stores now")
    def recheck_wallets(self, request: HttpRequest, queryset: QuerySet) -> None:
        keys = {WalletKey.from_row(row) for row in queryset.exclude(client_id="")}
        for key in sorted(keys, key=WalletKey.sort_key):
            agree, message = recheck_wallet(key, request.user.get_username())
            self.message_user(request, message, messages.SUCCESS if agree else messages.WARNING)


@admin.register(ShadowComparison)
class ShadowComparisonAdmin(_Money, ReadOnlyAdmin):
    list_display = (
        "compared_at",
        "client_id",
        "currency",
        "outcome",
        "different",
        "both_stores",
        "mongo_latency_us",
        "tb_latency_us",
    )
    # By date through a filter, not a date hierarchy, which reads every comparison's date
    # on each load (there is one a shadow read).
    list_filter = ("outcome", "compared_at")
    search_fields = ("client_id__exact",)  # through its index ("=client_id" is iexact)
    search_help_text = "Exact client id (case-sensitive)."

    @admin.display(description="differs in")
    def different(self, row: ShadowComparison) -> str:
        names = [name for name in row.mismatched_fields.split(",") if name]
        return ", ".join(BALANCE_WORDS.get(name.strip(), (name,))[0] for name in names)
