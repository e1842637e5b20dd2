"""Alerts (`migration.alerts`), one open per case, listed read-only for those who may view
them (Support, Product) and resolved by those who hold `migration.resolve_alert`, each
resolution kept (who, when) and in the alert's admin history; and the guard's checks
(`migration.guard`), read-only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from backoffice.admin_base import (
    OpenByDefaultFilter,
    ReadOnlyAdmin,
    figures_table,
    format_money,
)
from backoffice.links import when
from backoffice.selectors import BALANCE_WORDS
from migration import alerts
from migration.models import Alert, GuardCheck

RESOLVE_PERMISSION = "migration.resolve_alert"


class AlertStatusFilter(OpenByDefaultFilter):
    """Open (the default): not resolved yet. Resolved ones are the history."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved"), ("all", "all")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.selected()
        if value == "open":
            return queryset.filter(resolved_at__isnull=True)
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "opened_at",
        "kind",
        "case_page",
        "figures_summary",
        "count",
        "last_seen_at",
        "delivered",
        "status",
    )
    list_filter = (AlertStatusFilter, "kind")
    search_fields = ("client_id__exact",)
    search_help_text = "Exact client id (case-sensitive)."
    actions = ["resolve_alerts"]
    fields = (
        "kind",
        "case_page",
        "opened_at",
        "last_seen_at",
        "count",
        "figures_shown",
        "delivered",
        "status",
        "resolution",
    )
    readonly_fields = fields

    @admin.display(description="webhook")
    def delivered(self, alert: Alert) -> str:
        if alert.sent_at is not None:
            return f"sent {when(alert.sent_at)}"
        if not alert.send_attempts:
            return "not sent (no webhook set)" if not settings.ALERT_WEBHOOK_URL else "waiting"
        return f"not delivered ({alert.send_attempts} tries)"

    @admin.display(description="case", ordering="case")
    def case_page(self, alert: Alert) -> str:
        if not alert.link:
            return alert.case
        return format_html('<a class="case-link" href="{}">{}</a>', alert.link, alert.case)

    @admin.display(description="figures (as last seen)")
    def figures_summary(self, alert: Alert) -> str:
        """The figures in a line: what crossed, what differs and by how much, a run's counts."""
        figures = alert.figures
        if alert.kind == Alert.Kind.GUARD_STEP_BACK:
            return _crossed(figures.get("breaches", []))
        if alert.kind == Alert.Kind.GUARD_THRESHOLD:
            return _crossed([figures.get("breach", {})])
        if alert.kind == Alert.Kind.RECONCILIATION_RUN:
            return (
                f"{figures.get('mismatched', 0)} of {figures.get('checked', 0)} wallets differ; "
                f"{figures.get('transfer_differences', 0)} transfer registry differences"
                + (f"; failed: {figures['error']}" if figures.get("error") else "")
            )
        return _both_stores(figures) or str(figures.get("detail", ""))

    @admin.display(description="status")
    def status(self, alert: Alert) -> str:
        if alert.resolved_at is None:
            return "open"
        return f"resolved by {alert.resolved_by}, {when(alert.resolved_at)}"

    @admin.display(description="figures (as last seen)")
    def figures_shown(self, alert: Alert) -> str:
        return figures_table(alert.figures)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm(RESOLVE_PERMISSION):
            actions.pop("resolve_alerts", None)
        return actions

    @admin.action(description="Resolve these alerts (the next sighting opens a new one)")
    def resolve_alerts(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.has_perm(RESOLVE_PERMISSION):
            self.message_user(request, "You may not resolve alerts.", messages.ERROR)
            return
        actor = request.user.get_username()
        resolved = 0
        for alert in queryset.filter(resolved_at__isnull=True):
            if alerts.resolve(alert, actor=actor, resolution="resolved in the admin"):
                self.log_change(request, alert, f"Resolved by {actor}.")
                resolved += 1
        self.message_user(request, f"{resolved} alerts resolved.", messages.SUCCESS)


def _crossed(breaches: list[dict[str, str]]) -> str:
    return "; ".join(
        f"{breach.get('threshold')} {breach.get('value')} > {breach.get('maximum')}"
        for breach in breaches
        if breach
    )


def _both_stores(figures: dict[str, Any]) -> str:
    """A mismatch's differing fields, MongoDB's then TigerBeetle's, as money."""
    currency = figures.get("currency") or ""
    names = figures.get("fields") or []
    mongo, tigerbeetle = figures.get("mongo_minor") or [], figures.get("tigerbeetle_minor") or []
    if not currency or not mongo or len(names) != len(mongo) or len(mongo) != len(tigerbeetle):
        return ""
    parts = []
    for name, mongo_minor, tb_minor in zip(names, mongo, tigerbeetle, strict=True):
        if mongo_minor == tb_minor:
            continue
        words = BALANCE_WORDS.get(name, (name,))[0]
        shown = [
            "—" if value is None else format_money(value, currency)
            for value in (mongo_minor, tb_minor)
        ]
        parts.append(f"{words}: MongoDB {shown[0]}, TigerBeetle {shown[1]}")
    return "; ".join(parts)


@admin.register(GuardCheck)
class GuardCheckAdmin(ReadOnlyAdmin):
    """Each minute's check: the figures of its window, what crossed, what the guard did."""

    list_display = ("checked_at", "phase", "read_rollout_percent", "action", "crossed", "outcome")
    list_filter = ("action",)
    fields = (
        "checked_at",
        "phase",
        "read_rollout_percent",
        "action",
        "outcome",
        "crossed",
        "figures_shown",
    )
    readonly_fields = fields

    @admin.display(description="thresholds crossed")
    def crossed(self, row: GuardCheck) -> str:
        return _crossed(row.breaches)

    @admin.display(description="figures")
    def figures_shown(self, row: GuardCheck) -> str:
        return figures_table(row.figures)
