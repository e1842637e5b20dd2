"""Balance monitors in the admin (issue 24, item 3; events/monitors.py): support creates and
edits the rules (the line as a decimal amount in the rule's currency), sees each one's state
on every wallet it has seen (armed or fired, the balance it last saw) and its firings (the
`crossed` events)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from backoffice.admin_base import ReadOnlyAdmin, format_money
from domain.money import MoneyError, from_minor_units, normalize_currency, to_minor_units
from events.models import BalanceMonitor, Event, MonitorState


class BalanceMonitorForm(forms.ModelForm):
    """The line as people write it ("100.50" USD), stored in minor units by the currency's
    exponent (domain.money): more decimals than the currency has, zero or less is refused."""

    threshold = forms.DecimalField(
        help_text="the line on the available balance, in the currency (e.g. 100.50)"
    )

    class Meta:
        model = BalanceMonitor
        fields = ("name", "currency", "client_id", "country", "issuer", "direction", "active")
        help_texts = {
            "client_id": "one wallet: its client, country and issuer; empty: every wallet of "
            "the currency",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["threshold"] = from_minor_units(
                self.instance.threshold_minor, self.instance.currency
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            data["currency"] = normalize_currency(data.get("currency", ""))
        except MoneyError as error:
            self.add_error("currency", str(error))
            return data
        data["country"] = data.get("country", "").upper()
        if data.get("client_id") and not data["country"]:
            self.add_error("country", "A one-wallet monitor names the wallet's country.")
        threshold = data.get("threshold")
        if isinstance(threshold, Decimal):
            try:
                self.instance.threshold_minor = to_minor_units(threshold, data["currency"])
            except MoneyError as error:
                self.add_error("threshold", str(error))
        return data


class MonitorStateInline(admin.TabularInline):
    model = MonitorState
    fields = ("client_id", "wallet_ref", "fired", "balance", "firings", "changed_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-changed_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="balance last seen")
    def balance(self, state: MonitorState) -> str:
        return format_money(state.available_minor, state.monitor.currency)


class FiringInline(admin.TabularInline):
    model = Event
    fk_name = "monitor"
    verbose_name = "firing"
    verbose_name_plural = "firings (crossed events)"
    fields = ("id", "client_id", "crossed_to", "balance", "caused_by", "occurred_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="available after")
    def balance(self, event: Event) -> str:
        if event.available_minor is None:
            return "-"
        return format_money(event.available_minor, event.currency)


@admin.register(BalanceMonitor)
class BalanceMonitorAdmin(admin.ModelAdmin):
    form = BalanceMonitorForm
    list_display = ("id", "name", "scope", "direction", "line", "active", "created_by")
    list_filter = ("active", "direction", "currency")
    search_fields = ("=client_id", "name")
    inlines = (MonitorStateInline, FiringInline)
    ordering = ("-id",)

    @admin.display(description="wallets")
    def scope(self, monitor: BalanceMonitor) -> str:
        if monitor.currency_wide:
            return f"every {monitor.currency} wallet"
        issuer = f" ({monitor.issuer})" if monitor.issuer else ""
        return f"{monitor.client_id} {monitor.country} {monitor.currency}{issuer}"

    @admin.display(description="line")
    def line(self, monitor: BalanceMonitor) -> str:
        return format_money(monitor.threshold_minor, monitor.currency)

    def save_model(
        self, request: HttpRequest, obj: BalanceMonitor, form: forms.ModelForm, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Deactivate a monitor rather than delete it: its firings keep naming it."""
        return bool(request.user.is_superuser)


@admin.register(MonitorState)
class MonitorStateAdmin(ReadOnlyAdmin):
    list_display = ("id", "monitor", "client_id", "fired", "balance", "firings", "changed_at")
    list_filter = ("fired",)
    search_fields = ("=client_id", "=wallet_ref")
    list_select_related = ("monitor",)
    ordering = ("-changed_at",)

    @admin.display(description="balance last seen")
    def balance(self, state: MonitorState) -> str:
        return format_money(state.available_minor, state.monitor.currency)

    def get_queryset(self, request: HttpRequest) -> QuerySet[MonitorState]:
        return super().get_queryset(request).select_related("monitor")
