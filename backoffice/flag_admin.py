"""The audit trail of migration flag flips and the milestones, read-only in the admin; and
waffle's own admin, where the migration flags are read-only too (only a phase change moves
them)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from waffle import admin as waffle_admin
from waffle.models import Sample, Switch

from backoffice.admin_base import ReadOnlyAdmin, figures_table
from flags.audit import refuse_outside_phase_change
from flags.models import FlagChange, Milestone
from flags.phases import SAMPLES, SWITCHES, InvalidPhaseChange


@admin.register(FlagChange)
class FlagChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "flag_name", "old_value", "new_value", "actor", "note")
    list_filter = ("flag_name", "actor")
    search_fields = ("flag_name", "actor", "note")
    date_hierarchy = "changed_at"


@admin.register(Milestone)
class MilestoneAdmin(ReadOnlyAdmin):
    list_display = ("milestone", "reached_at", "details")
    fields = list_display
    readonly_fields = fields

    @admin.display(description="milestone", ordering="name")
    def milestone(self, row: Milestone) -> str:
        return row.name.replace("_", " ")

    @admin.display(description="details")
    def details(self, row: Milestone) -> str:
        return figures_table(row.detail)


MIGRATION_FLAGS = frozenset(SWITCHES + SAMPLES)


class _MigrationFlagForm(forms.ModelForm):
    """Refuses, as a form error, giving any flag a migration flag's name (the migration
    flags themselves are read-only here: see _MigrationFlagsReadOnly)."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        names = {cleaned.get("name") or "", self.instance.name if self.instance.pk else ""}
        try:
            refuse_outside_phase_change(names)
        except InvalidPhaseChange as exc:
            raise forms.ValidationError(str(exc)) from exc
        return cleaned


class SwitchForm(_MigrationFlagForm):
    class Meta:
        model = Switch
        fields = ("name", "active", "note")


class SampleForm(_MigrationFlagForm):
    class Meta:
        model = Sample
        fields = ("name", "percent", "note")


def _flip_each(request: HttpRequest, queryset: Any, active: bool) -> None:
    for switch in queryset:
        try:
            switch.active = active
            switch.save()
        except InvalidPhaseChange as exc:
            messages.error(request, f"{switch.name}: refused: {exc}")


@admin.action(description="Enable selected switches")
def enable_switches(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    _flip_each(request, queryset, True)


@admin.action(description="Disable selected switches")
def disable_switches(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    _flip_each(request, queryset, False)


class _MigrationFlagsReadOnly(admin.ModelAdmin):
    """The migration flags move money: no rename, edit or delete here, even for a
    superuser. They are shown read-only, pointing to the phase page, the one way to change
    them (the flags app's signals refuse any other write as well). A ModelAdmin itself, so
    its calls on the admin it is mixed into are typed; waffle's admin comes after it."""

    def _is_migration_flag(self, obj: Any) -> bool:
        return obj is not None and obj.name in MIGRATION_FLAGS

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self._is_migration_flag(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self._is_migration_flag(obj):
            return False
        return super().has_delete_permission(request, obj)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, object_id)
        if obj is not None and self._is_migration_flag(obj) and request.method == "GET":
            messages.info(
                request,
                f"{obj.name} is a migration flag: change it on the migration phase page "
                f"({reverse('admin:migration-phase')}), which drains, copies back and audits.",
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_individually", None)
        return actions


class SwitchAdmin(_MigrationFlagsReadOnly, waffle_admin.SwitchAdmin):
    form = SwitchForm
    actions = [enable_switches, disable_switches]


class SampleAdmin(_MigrationFlagsReadOnly, waffle_admin.SampleAdmin):
    form = SampleForm
    actions: list[Any] = []


for model, model_admin in ((Switch, SwitchAdmin), (Sample, SampleAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
