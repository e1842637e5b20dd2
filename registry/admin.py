"""Support staff's admin: find a client's wallets, see both stores side by side, void."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from ledger import errors
from ledger.money import from_minor_units
from ledger.service import WalletService, mongo_store, tigerbeetle_store
from ledger.support import wallet_overview
from registry import accounts as account_registry
from registry.models import WalletAccount, WalletTransfer
from wallet_site.admin_base import ReadOnlyAdmin


class IssuerFilter(admin.SimpleListFilter):
    title = "issuer"
    parameter_name = "issuer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        issuers = WalletAccount.objects.values_list("issuer", flat=True).distinct()
        return [("-", "(none)")] + [(i, i) for i in issuers.order_by("issuer") if i]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(issuer="" if value == "-" else value)


@admin.register(WalletAccount)
class WalletAccountAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "country", "currency", "issuer", "tb_account_id_hex", "created_at")
    list_filter = ("currency", "country", IssuerFilter)
    search_fields = ("=client_id", "client_id")
    ordering = ("client_id", "currency", "country")
    list_per_page = 50

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """A wallet's page: both stores' balances, TigerBeetle's transfers and history, the
        MongoDB transaction log."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        wallet = self.get_object(request, object_id)
        if wallet is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        overview = wallet_overview(
            wallet.key,
            mongo_store(),
            tigerbeetle_store(),
        )
        return TemplateResponse(
            request,
            "admin/registry/wallet_overview.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Wallet {wallet}",
                "wallet": wallet,
                "overview": overview,
                "rows": _balance_rows(overview),
                "history": [
                    {"at": _tb_time(point.as_of_tb_timestamp), "balance": point}
                    for point in overview.history
                ],
                "can_void": request.user.has_perm("registry.void_wallettransfer"),
            },
        )


def _tb_time(tb_timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(tb_timestamp / 1e9, tz=UTC) if tb_timestamp else None


def _balance_rows(overview: Any) -> list[dict[str, Any]]:
    rows = []
    for name in ("credit", "debit", "historical_credit"):
        mongo, tb = overview.mongo.balance, overview.tigerbeetle.balance
        rows.append(
            {
                "name": name.replace("_", " "),
                "mongo": getattr(mongo, name) if mongo else None,
                "tigerbeetle": getattr(tb, name) if tb else None,
                "differs": name in overview.differing_fields,
            }
        )
    return rows


class VoidForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=1000,
        help_text="Mandatory: why this transaction is voided (kept with the void).",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A void needs a reason.")
        return reason


@admin.register(WalletTransfer)
class WalletTransferAdmin(ReadOnlyAdmin):
    list_display = (
        "transaction_id",
        "wallet",
        "kind",
        "amount",
        "state",
        "created_at",
        "made_by",
        "voided_by",
        "voided_at",
    )
    list_filter = ("state", "kind", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=transaction_id", "wallet__client_id")
    list_select_related = ("wallet",)
    actions = ["void_selected"]
    readonly_fields = [f.name for f in WalletTransfer._meta.fields]

    @admin.display(description="amount")
    def amount(self, row: WalletTransfer) -> str:
        return f"{from_minor_units(row.amount_minor, row.wallet.currency)} {row.wallet.currency}"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("registry.void_wallettransfer"):
            actions.pop("void_selected", None)
        return actions

    @admin.action(description="Void the selected transaction")
    def void_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(
                request,
                "Select exactly one transaction to void; each needs its own reason.",
                messages.ERROR,
            )
            return None
        return HttpResponseRedirect(
            reverse("admin:registry_wallettransfer_void", args=[queryset.get().transaction_id])
        )

    def get_urls(self) -> list[URLPattern]:
        void = path(
            "void/<path:transaction_id>/",
            self.admin_site.admin_view(self.void_view),
            name="registry_wallettransfer_void",
        )
        return [void, *super().get_urls()]

    def void_view(self, request: HttpRequest, transaction_id: str) -> HttpResponse:
        """Confirmation with a mandatory reason, then the void through the wallet service
        (so it goes to whichever store the migration phase makes primary)."""
        if not request.user.has_perm("registry.void_wallettransfer"):
            raise PermissionDenied
        service = WalletService()
        try:
            record = service.get_transaction(transaction_id)
        except errors.WalletError as exc:
            self.message_user(
                request, f"Cannot void {transaction_id!r}: {exc.message}", messages.ERROR
            )
            return HttpResponseRedirect(reverse("admin:registry_wallettransfer_changelist"))
        form = VoidForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = service.void_transaction(
                    transaction_id,
                    voided_by=request.user.get_username(),
                    reason=form.cleaned_data["reason"],
                )
            except errors.WalletError as exc:
                self.message_user(request, f"Not voided: {exc.message}", messages.ERROR)
            else:
                self._log_void(request, transaction_id, form.cleaned_data["reason"])
                balance = result.balance
                self.message_user(
                    request,
                    f"Voided {transaction_id}. The wallet's available credit is now "
                    f"{balance.credit} {balance.key.currency}.",
                    messages.SUCCESS,
                )
                wallet = account_registry.find_account(balance.key)
                if wallet is not None:
                    return HttpResponseRedirect(
                        reverse("admin:registry_walletaccount_change", args=[wallet.registry_pk])
                    )
                return HttpResponseRedirect(reverse("admin:registry_wallettransfer_changelist"))
        return render(
            request,
            "admin/registry/void_confirm.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Void transaction {transaction_id}",
                "record": record,
                "form": form,
            },
        )

    def _log_void(self, request: HttpRequest, transaction_id: str, reason: str) -> None:
        """Django's admin history gets the void too (who, when, why), beside the stores'
        own record of it (voided_by, void_reason, voided_at)."""
        row = WalletTransfer.objects.filter(transaction_id=transaction_id).first()
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(WalletTransfer),
            object_id=str(row.pk) if row else transaction_id,
            object_repr=f"transaction {transaction_id}"[:200],
            action_flag=CHANGE,
            change_message=f"Voided: {reason}",
        )
