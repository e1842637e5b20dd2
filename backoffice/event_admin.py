"""The event feed in the admin (issue 24): events, webhook subscriptions (managed here as in
the API), their deliveries and every attempt of each; replay of one delivery or of several
(an action on the selected deliveries, and on a subscription: every event of its types again)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backoffice.admin_base import ReadOnlyAdmin
from events.delivery import replay, replay_range
from events.models import Delivery, DeliveryAttempt, Event, Subscription

REPLAY_PERMISSION = "events.replay_delivery"


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "reference_id",
        "client_id",
        "currency",
        "amount_minor",
        "available_minor",
        "actor",
        "occurred_at",
        "source",
    )
    list_filter = ("type", "source")
    search_fields = ("=event_id", "=reference_id", "=client_id", "=wallet_ref")
    ordering = ("-id",)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("attempted_at", "succeeded", "status_code", "error", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("attempted_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "subscription", "event", "state", "attempts", "next_attempt_at")
    list_filter = ("state",)
    search_fields = ("=event__event_id", "=wallet_ref")
    list_select_related = ("subscription", "event")
    inlines = (AttemptInline,)
    actions = ("replay_selected",)
    ordering = ("-id",)

    @admin.action(description="Deliver the selected deliveries again", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = replay(list(queryset))
        self.message_user(request, f"{count} deliveries will be sent again.", messages.SUCCESS)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REPLAY_PERMISSION)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ("id", "delivery", "attempted_at", "succeeded", "status_code", "error")
    list_filter = ("succeeded",)
    ordering = ("-id",)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("id", "url", "owner", "event_types", "active", "created_at")
    list_filter = ("active",)
    actions = ("replay_everything",)

    @admin.action(description="Deliver every event of their types again", permissions=["replay"])
    def replay_everything(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = sum(replay_range(s.pk, after=0, until=None) for s in queryset)
        self.message_user(request, f"{count} deliveries will be sent again.", messages.SUCCESS)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REPLAY_PERMISSION)
