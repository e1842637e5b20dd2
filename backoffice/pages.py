"""The product team's admin pages: the migration phase (previewing the step's plan: its
refusals, or a confirmation before anything that moves where money is written) and the
dashboard of the seed's success criteria."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from backoffice import charts, figures
from backoffice.blockers import unfinished_reconciliation
from backoffice.links import when
from flags.models import FlagChange, Milestone, PhaseChange
from flags.phases import (
    DUAL_WRITE,
    DUAL_WRITE_SHARE,
    READ_CUTOVER,
    READ_ROLLOUT,
    SAMPLES,
    SHADOW_READ,
    TIGERBEETLE_ONLY,
    WRITES_PAUSED,
    InvalidPhaseChange,
    Phase,
    current_state,
)
from migration import criteria, guard, tasks
from migration.models import AcknowledgedLegacyCase, GuardCheck
from migration.phase_change import change_phase
from migration.phase_plan import (
    OVERRIDE_PERMISSION,
    Override,
    StepPlan,
    next_step_criterion,
    override_asked,
    plan_phase_change,
    preview_next_step,
)
from migration.runtime import process_runtime
from staff.four_eyes import ApprovalRefused
from staff.models import PhaseApproval
from staff.phase_approvals import StepAsked, expire_overdue, request_step, why_four_eyes

PHASE_LABELS = {
    Phase.LEGACY: "0 - legacy (MongoDB only)",
    Phase.DUAL_WRITE: "1 - dual write",
    Phase.SHADOW_READ: "2 - shadow read",
    Phase.READ_CUTOVER: "3 - read cutover",
    Phase.TIGERBEETLE_ONLY: "4 - TigerBeetle only",
}
FLAG_LABELS = {
    DUAL_WRITE: "dual write",
    DUAL_WRITE_SHARE: "dual-write share",
    SHADOW_READ: "shadow read share",
    READ_CUTOVER: "read cutover",
    READ_ROLLOUT: "read rollout share",
    TIGERBEETLE_ONLY: "TigerBeetle only",
    WRITES_PAUSED: "writes paused",
}
# Which phase uses which share: the form shows (and requires) only these.
SHARE_OF_PHASE = {Phase.SHADOW_READ: "shadow_percent", Phase.READ_CUTOVER: "rollout_percent"}


class PhaseForm(forms.Form):
    phase = forms.TypedChoiceField(
        choices=[(int(p), label) for p, label in PHASE_LABELS.items()], coerce=int
    )
    shadow_percent = forms.DecimalField(
        label="Shadow read share (%)",
        min_value=0,
        max_value=100,
        decimal_places=1,
        required=False,
        help_text="phase 2: percent of balance reads also compared on TigerBeetle",
    )
    rollout_percent = forms.DecimalField(
        label="Read rollout (% of clients)",
        min_value=0,
        max_value=100,
        decimal_places=1,
        required=False,
        help_text="phase 3: percent of clients whose balance reads TigerBeetle serves",
    )
    dual_write_percent = forms.DecimalField(
        label="Dual-write share (% of clients)",
        min_value=0,
        max_value=100,
        decimal_places=1,
        required=False,
        help_text="phases 1-3: percent of clients whose writes are mirrored into TigerBeetle, "
        "raised one step at a time; leave empty to keep it",
    )
    note = forms.CharField(
        max_length=500, required=False, help_text="why, in your words, for the audit trail"
    )
    override = forms.BooleanField(
        label="Override the criterion",
        required=False,
        help_text="take this forward step although its criterion has not held (only that "
        "refusal is lifted); audited with the criterion's figures",
    )
    override_reason = forms.CharField(
        label="Why the override",
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        """The share the chosen phase uses is required (no silent default); the others are
        not used by that phase and are dropped."""
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        if "phase" not in cleaned:
            return cleaned
        phase = Phase(cleaned["phase"])
        used = SHARE_OF_PHASE.get(phase)
        for name in SHARE_OF_PHASE.values():
            if name != used:
                cleaned[name] = None
        if phase == Phase.SHADOW_READ and not cleaned.get("shadow_percent"):
            self.add_error(
                "shadow_percent", "Phase 2 needs the share of reads to compare (more than 0%)."
            )
        if phase == Phase.READ_CUTOVER and cleaned.get("rollout_percent") is None:
            self.add_error(
                "rollout_percent",
                "Phase 3 needs the share of clients whose reads TigerBeetle serves (0-100%).",
            )
        return cleaned


def flag_value_label(flag_name: str, *, value: str) -> str:
    """One format for the audit: switches on/off, shares as percentages."""
    if value == "":
        return "not set"
    if flag_name in SAMPLES:
        return f"{Decimal(value).normalize():f}%"
    return value


@dataclass(frozen=True)
class AuditRow:
    """One line of the audit trail: a phase change with the flips it made, or a flip made
    on its own (waffle's admin, a shell)."""

    at: datetime
    phase_change: PhaseChange | None
    flips: list[dict[str, str]]

    @property
    def from_label(self) -> str:
        return PHASE_LABELS[Phase(self.phase_change.from_phase)] if self.phase_change else ""

    @property
    def to_label(self) -> str:
        return PHASE_LABELS[Phase(self.phase_change.to_phase)] if self.phase_change else ""


def _flip(change: FlagChange) -> dict[str, str]:
    return {
        "at": when(change.changed_at),
        "flag": FLAG_LABELS.get(change.flag_name, change.flag_name),
        "name": change.flag_name,
        "old": flag_value_label(change.flag_name, value=change.old_value),
        "new": flag_value_label(change.flag_name, value=change.new_value),
        "actor": change.actor,
    }


def audit_trail(limit: int = 30) -> list[AuditRow]:
    phase_changes = list(PhaseChange.objects.prefetch_related("flag_changes")[:limit])
    lone_flips = list(FlagChange.objects.filter(phase_change__isnull=True)[:limit])
    rows = [
        AuditRow(
            change.changed_at,
            change,
            [_flip(flip) for flip in sorted(change.flag_changes.all(), key=lambda f: f.id)],
        )
        for change in phase_changes
    ]
    rows += [AuditRow(flip.changed_at, None, [_flip(flip)]) for flip in lone_flips]
    rows.sort(key=lambda row: row.at, reverse=True)
    return rows[:limit]


def next_step_context() -> dict[str, Any]:
    """For the phase page and the dashboard: the step forward from now, the criterion it
    waits for day by day, and what refuses it now with what would lift each refusal."""
    preview = preview_next_step(outbox=process_runtime().outbox)
    # The acknowledged legacy wallets the open-mismatches gate leaves out: named, not silent.
    gate_set_aside = [key.describe() for key in criteria.open_mismatches().set_aside]
    if preview is None or preview.criterion is None:
        criterion = next_step_criterion(current_state(), outbox_depth=figures.outbox_depth)
        return {
            "criterion": criterion,
            "next_refusals": (),
            "next_step_planned": False,
            "gate_set_aside": gate_set_aside,
        }
    return {
        "criterion": preview.criterion,
        "next_refusals": preview.refusals,
        "next_step_planned": True,
        "gate_set_aside": gate_set_aside,
    }


def _pending_approval() -> PhaseApproval | None:
    """The phase change request waiting for a second person, if any (four eyes)."""
    expire_overdue()
    return PhaseApproval.objects.filter(state=PhaseApproval.State.PENDING).first()


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
        initial: dict[str, Any] = {"phase": int(state.phase)}
        if state.phase == Phase.SHADOW_READ:
            initial["shadow_percent"] = state.shadow_read_percent
        if state.phase == Phase.READ_CUTOVER:
            initial["rollout_percent"] = state.read_rollout_percent
        form = form or PhaseForm(initial=initial)
        outbox, outbox_notice = figures.outbox_status()
        return render(
            request,
            "admin/migration/phase.html",
            self.context(
                request,
                title="Migration phase",
                state=state,
                phase_label=PHASE_LABELS[state.phase],
                form=form,
                share_of_phase={int(p): name for p, name in SHARE_OF_PHASE.items()},
                can_change=request.user.has_perm("flags.change_phase"),
                can_override=request.user.has_perm(OVERRIDE_PERMISSION),
                audit=audit_trail(),
                backfill=Milestone.objects.filter(name=Milestone.BACKFILL_COMPLETED).first(),
                **next_step_context(),
                outbox=outbox,
                outbox_notice=outbox_notice,
                guard_does=guard.what_it_does(
                    state,
                    rollout_steps=tuple(settings.READ_ROLLOUT_STEPS),
                    thresholds=guard.Thresholds.from_settings(),
                ),
                guard_last_check=GuardCheck.objects.first(),
                pending_approval=_pending_approval(),
            ),
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("flags.change_phase"):
            raise PermissionDenied
        if "_backfill" in request.POST:
            return self._start_backfill(request)
        form = PhaseForm(request.POST)
        if not form.is_valid():
            return self.get(request, form)
        data = form.cleaned_data
        override = (
            override_asked(request.user, reason=data["override_reason"])
            if data["override"]
            else None
        )
        plan = plan_phase_change(
            Phase(data["phase"]),
            outbox=process_runtime().outbox,
            rollout_percent=data["rollout_percent"],
            shadow_percent=data["shadow_percent"],
            dual_write_percent=data["dual_write_percent"],
            override=override,
        )
        if plan.refusals:
            for refusal in plan.refusals:
                form.add_error(None, refusal.reason)
            return self.get(request, form)
        if plan.moves_writes and not data["confirmed"]:
            return self._confirmation(request, plan, data)
        if why_four_eyes(plan):
            return self._request_approval(request, plan, data)
        return self._take(request, plan, data, override)

    def _request_approval(
        self, request: HttpRequest, plan: StepPlan, data: dict[str, Any]
    ) -> HttpResponse:
        """Four eyes: the step is filed for another person's approval; nothing changes."""
        asked = StepAsked(
            phase=plan.phase,
            note=data["note"],
            rollout_percent=data["rollout_percent"],
            shadow_percent=data["shadow_percent"],
            dual_write_percent=data["dual_write_percent"],
            override_reason=data["override_reason"] if data["override"] else "",
        )
        try:
            approval = request_step(asked, plan=plan, requested_by=request.user.get_username())
        except ApprovalRefused as exc:
            messages.warning(request, str(exc))
        else:
            messages.warning(
                request,
                f"Not taken yet: this step waits for another person's approval because "
                f"{approval.why_four_eyes} (Phase approvals, request {approval.pk}).",
            )
        return HttpResponseRedirect(reverse("admin:migration-phase"))

    def _confirmation(
        self, request: HttpRequest, plan: StepPlan, data: dict[str, Any]
    ) -> HttpResponse:
        """What the step will do, before it moves where money is written: asked once more."""
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
                before=PHASE_LABELS[plan.before.phase],
                after=PHASE_LABELS[plan.phase],
                effects=plan.effects,
                criterion=plan.criterion,
                overridden=plan.overridden,
                form=confirm,
            ),
        )

    def _take(
        self,
        request: HttpRequest,
        plan: StepPlan,
        data: dict[str, Any],
        override: Override | None,
    ) -> HttpResponse:
        phase = plan.phase
        try:
            report = change_phase(
                phase,
                actor=request.user.get_username(),
                mongo=process_runtime().mongo,
                tigerbeetle=process_runtime().batches,
                note=data["note"],
                rollout_percent=data["rollout_percent"],
                shadow_percent=data["shadow_percent"],
                dual_write_percent=data["dual_write_percent"],
                override=override,
                on_share_raised=tasks.queue_share_intake,
            )
        except InvalidPhaseChange as exc:
            messages.error(request, f"Refused: {exc}")
        else:
            done = f"The migration is now in phase {PHASE_LABELS[phase]}."
            if plan.overridden:
                done += " Its criterion had not held: the override is in the audit trail."
            if report.share_raised:
                done += (
                    f" The dual-write share is {criteria.percent(plan.after.dual_write_percent)}%"
                    f": {report.released} outbox entries of the clients it took in went to the "
                    "mirror, and the backfill was started for their legacy wallets."
                )
            if report.mirrored or report.copied_back:
                done += (
                    f" {report.mirrored} outbox entries mirrored, {report.copied_back} writes "
                    "copied back into MongoDB."
                )
            messages.success(request, done)
        return HttpResponseRedirect(reverse("admin:migration-phase"))

    def _start_backfill(self, request: HttpRequest) -> HttpResponse:
        """Queue the backfill (idempotent and resumable), so no one needs a shell for it."""
        tasks.backfill.delay()
        messages.success(
            request,
            "The backfill has been started. It imports legacy wallets into TigerBeetle; "
            "this page shows when it has completed.",
        )
        return HttpResponseRedirect(reverse("admin:migration-phase"))


class DashboardView(_SiteView):
    def get(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("migration.view_migration_dashboard"):
            raise PermissionDenied
        state = current_state()
        outbox, outbox_notice = figures.outbox_status()
        rates = charts.daily_match_rates()
        return render(
            request,
            "admin/migration/dashboard.html",
            self.context(
                request,
                title="Migration dashboard",
                state=state,
                phase_label=PHASE_LABELS[state.phase],
                criteria=figures.success_criteria(days=7),
                set_aside_cases=AcknowledgedLegacyCase.objects.count(),
                **next_step_context(),
                routes=criteria.read_routes(days=7),
                last_run=criteria.last_reconciliation(),
                running_run=unfinished_reconciliation(),
                outbox=outbox,
                outbox_notice=outbox_notice,
                latencies=figures.operation_latencies(),
                match_rate_svg=charts.match_rate_chart(rates),
                missed_days=charts.missed_days(rates),
                latency_svg=charts.latency_chart(),
            ),
        )
