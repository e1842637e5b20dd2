"""The audit trail of migration flag flips and the milestones, read-only in the admin."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from flags.models import FlagChange, Milestone


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit rows are written by the system only: nobody edits or deletes history."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(FlagChange)
class FlagChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "flag_name", "old_value", "new_value", "actor", "note")
    list_filter = ("flag_name", "actor")
    search_fields = ("flag_name", "actor", "note")
    date_hierarchy = "changed_at"


@admin.register(Milestone)
class MilestoneAdmin(ReadOnlyAdmin):
    list_display = ("name", "reached_at", "detail")
