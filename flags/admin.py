"""The audit trail of migration flag flips and the milestones, read-only in the admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from waffle import admin as waffle_admin
from waffle.models import Sample, Switch

from flags.audit import check_single_flip, flag_value
from flags.models import FlagChange, Milestone
from flags.phases import SAMPLES, SWITCHES, InvalidPhaseChange
from wallet_site.admin_base import ReadOnlyAdmin


@admin.register(FlagChange)
class FlagChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "flag_name", "old_value", "new_value", "actor", "note")
    list_filter = ("flag_name", "actor")
    search_fields = ("flag_name", "actor", "note")
    date_hierarchy = "changed_at"


@admin.register(Milestone)
class MilestoneAdmin(ReadOnlyAdmin):
    list_display = ("name", "reached_at", "detail")


class _MigrationFlagForm(forms.ModelForm):
    """Refuses, as a form error, a single flip that breaks the phase rules."""

    value_field = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        name = cleaned.get("name") or (self.instance.name if self.instance.pk else "")
        if name in SWITCHES + SAMPLES:
            old = ""
            if self.instance.pk:
                old = flag_value(type(self.instance).objects.get(pk=self.instance.pk))
            new_value = cleaned.get(self.value_field)
            new = ("on" if new_value else "off") if self.value_field == "active" else str(new_value)
            try:
                check_single_flip(name, new, old)
            except InvalidPhaseChange as exc:
                raise forms.ValidationError(str(exc)) from exc
        return cleaned


class SwitchForm(_MigrationFlagForm):
    value_field = "active"

    class Meta:
        model = Switch
        fields = ("name", "active", "note")


class SampleForm(_MigrationFlagForm):
    value_field = "percent"

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


class _NoDeletingMigrationFlags:
    """Deleting a migration flag would flip it silently: never offered."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.name in SWITCHES + SAMPLES:
            return False
        return super().has_delete_permission(request, obj)  # type: ignore[misc]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_individually", None)
        return actions


class SwitchAdmin(_NoDeletingMigrationFlags, waffle_admin.SwitchAdmin):
    form = SwitchForm
    actions = [enable_switches, disable_switches]


class SampleAdmin(_NoDeletingMigrationFlags, waffle_admin.SampleAdmin):
    form = SampleForm
    actions: list[Any] = []


for model, model_admin in ((Switch, SwitchAdmin), (Sample, SampleAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
