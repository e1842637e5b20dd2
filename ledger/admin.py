"""Reconciliation runs and mismatches (with a re-check), and shadow comparisons."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ledger.ids import WalletKey
from ledger.models import ReconciliationMismatch, ReconciliationRun, ShadowComparison
from ledger.reconciliation import Reconciliation
from ledger.service import mongo_outbox, tigerbeetle_store
from wallet_site.admin_base import ReadOnlyAdmin


class MismatchInline(admin.TabularInline):
    model = ReconciliationMismatch
    extra = 0
    max_num = 0
    can_delete = False
    fields = (
        "kind",
        "client_id",
        "country",
        "currency",
        "issuer",
        "mongo_credit_minor",
        "tb_credit_minor",
        "mongo_debit_minor",
        "tb_debit_minor",
        "mongo_historical_credit_minor",
        "tb_historical_credit_minor",
        "pending_mirror_entries",
    )
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


@admin.register(ReconciliationMismatch)
class ReconciliationMismatchAdmin(ReadOnlyAdmin):
    list_display = (
        "run",
        "kind",
        "client_id",
        "country",
        "currency",
        "mongo_credit_minor",
        "tb_credit_minor",
        "pending_mirror_entries",
    )
    list_filter = ("kind", "currency")
    search_fields = ("=client_id",)
    actions = ["recheck_wallets"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("ledger.recheck_wallet"):
            actions.pop("recheck_wallets", None)
        return actions

    @admin.action(description="Re-check these wallets in both stores now")
    def recheck_wallets(self, request: HttpRequest, queryset: QuerySet) -> None:
        reconciliation = Reconciliation(
            mongo_outbox(),
            tigerbeetle_store(),
        )
        for mismatch in queryset.exclude(client_id=""):
            key = WalletKey(
                mismatch.client_id, mismatch.country, mismatch.currency, mismatch.issuer
            )
            mongo, tb = reconciliation.recheck(key)
            if mongo is not None and mongo == tb:
                self.message_user(request, f"{key.describe()}: both stores agree now.")
            else:
                self.message_user(
                    request,
                    f"{key.describe()}: still different - MongoDB "
                    f"{mongo.fields_minor() if mongo else 'no wallet'}, TigerBeetle "
                    f"{tb.fields_minor() if tb else 'no account'} (credit, debit, historical).",
                    messages.WARNING,
                )


@admin.register(ShadowComparison)
class ShadowComparisonAdmin(ReadOnlyAdmin):
    list_display = (
        "compared_at",
        "client_id",
        "currency",
        "outcome",
        "mismatched_fields",
        "mongo_credit_minor",
        "tb_credit_minor",
        "mongo_latency_us",
        "tb_latency_us",
    )
    list_filter = ("outcome",)
    search_fields = ("=client_id",)
    date_hierarchy = "compared_at"
