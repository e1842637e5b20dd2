"""The product team's admin pages: the migration phase (with a confirmation before anything
that moves where money is written) and the dashboard of the seed's success criteria."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from flags.models import FlagChange
from flags.phases import InvalidPhaseChange, MigrationState, Phase, current_state
from ledger import charts, migration_figures
from ledger.phase_change import change_phase, target_state
from ledger.service import mongo_store, tigerbeetle_store

PHASE_LABELS = {
    Phase.LEGACY: "0 - legacy (MongoDB only)",
    Phase.DUAL_WRITE: "1 - dual write",
    Phase.SHADOW_READ: "2 - shadow read",
    Phase.READ_CUTOVER: "3 - read cutover",
    Phase.TIGERBEETLE_ONLY: "4 - TigerBeetle only",
}


class PhaseForm(forms.Form):
    phase = forms.TypedChoiceField(
        choices=[(int(p), label) for p, label in PHASE_LABELS.items()], coerce=int
    )
    rollout_percent = forms.DecimalField(
        min_value=0,
        max_value=100,
        decimal_places=1,
        required=False,
        help_text="phase 3: percent of clients reading from TigerBeetle",
    )
    shadow_percent = forms.DecimalField(
        min_value=0,
        max_value=100,
        decimal_places=1,
        required=False,
        help_text="phase 2: percent of reads compared on TigerBeetle",
    )
    note = forms.CharField(max_length=500, required=False, help_text="why, for the audit trail")
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)


def moves_writes(before: MigrationState, after: MigrationState) -> list[str]:
    """What a change does to where money is written (empty when it does not)."""
    effects = []
    if before.mirrors_to_tigerbeetle != after.mirrors_to_tigerbeetle and before.writes_to_mongo:
        effects.append(
            "Dual write starts: every MongoDB write is also mirrored into TigerBeetle."
            if after.mirrors_to_tigerbeetle
            else "Dual write stops: TigerBeetle no longer receives MongoDB's writes."
        )
    if not after.writes_to_mongo and before.writes_to_mongo:
        effects.append(
            "Writes pause for a moment, the mirror is drained, then TigerBeetle becomes the "
            "only store: MongoDB is no longer written."
        )
    if after.writes_to_mongo and not before.writes_to_mongo:
        effects.append(
            "Writes pause for a moment, every TigerBeetle-only write is copied back to "
            "MongoDB, then MongoDB is written again (with dual write)."
        )
    return effects


class _SiteView(View):
    site: admin.AdminSite | None = None

    def context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        assert self.site is not None
        return {**self.site.each_context(request), **extra}


class PhaseView(_SiteView):
    """GET: the resolver's view of the flags and the audit trail. POST: change the phase."""

    def get(self, request: HttpRequest, form: PhaseForm | None = None) -> HttpResponse:
        if not (
            request.user.has_perm("flags.change_phase")
            or request.user.has_perm("flags.view_flagchange")
        ):
            raise PermissionDenied
        state = current_state()
        form = form or PhaseForm(
            initial={
                "phase": int(state.phase),
                "rollout_percent": state.read_rollout_percent,
                "shadow_percent": state.shadow_read_percent,
            }
        )
        return render(
            request,
            "admin/migration/phase.html",
            self.context(
                request,
                title="Migration phase",
                state=state,
                phase_label=PHASE_LABELS[state.phase],
                form=form,
                can_change=request.user.has_perm("flags.change_phase"),
                changes=FlagChange.objects.all()[:30],
            ),
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("flags.change_phase"):
            raise PermissionDenied
        form = PhaseForm(request.POST)
        if not form.is_valid():
            return self.get(request, form)
        data = form.cleaned_data
        phase = Phase(data["phase"])
        rollout: Decimal | None = data["rollout_percent"]
        shadow: Decimal | None = data["shadow_percent"]
        before = current_state()
        after = target_state(phase, before, rollout, shadow)
        effects = moves_writes(before, after)
        if effects and not data["confirmed"]:
            confirm = PhaseForm(initial={**data, "confirmed": True})
            for name in confirm.fields:
                if name != "confirmed":
                    confirm.fields[name].widget = forms.HiddenInput()
            return render(
                request,
                "admin/migration/phase_confirm.html",
                self.context(
                    request,
                    title="Confirm the phase change",
                    before=PHASE_LABELS[before.phase],
                    after=PHASE_LABELS[phase],
                    effects=effects,
                    form=confirm,
                ),
            )
        try:
            change_phase(
                phase,
                actor=request.user.get_username(),
                mongo=mongo_store(),
                tigerbeetle=tigerbeetle_store(),
                note=data["note"],
                rollout_percent=rollout,
                shadow_percent=shadow,
            )
        except InvalidPhaseChange as exc:
            messages.error(request, f"Refused: {exc}")
        else:
            messages.success(request, f"The migration is now in phase {PHASE_LABELS[phase]}.")
        return HttpResponseRedirect(reverse("admin:migration-phase"))


class DashboardView(_SiteView):
    def get(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("ledger.view_migration_dashboard"):
            raise PermissionDenied
        state = current_state()
        return render(
            request,
            "admin/migration/dashboard.html",
            self.context(
                request,
                title="Migration dashboard",
                state=state,
                phase_label=PHASE_LABELS[state.phase],
                criteria=migration_figures.success_criteria(days=7),
                routes=migration_figures.read_routes(days=7),
                last_run=migration_figures.last_reconciliation(),
                outbox=migration_figures.outbox_depth(),
                match_rate_svg=charts.match_rate_chart(),
                latency_svg=charts.latency_chart(),
            ),
        )
