"""Phase approvals (four eyes, issue 27): the phase steps that override a criterion or enter
or leave phase 4 wait here (`staff.phase_approvals`). Another person holding the permission to
change the phase (and to override, for an override) opens a request, writes why, and
approves it (the step is taken now, with the gates as they are now) or rejects it. Nobody
decides their own request; one past its time has expired."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from backoffice.admin_base import ReadOnlyAdmin
from backoffice.links import when
from flags.phases import InvalidPhaseChange
from migration import tasks
from migration.runtime import process_runtime
from staff.four_eyes import ApprovalRefused
from staff.models import PhaseApproval
from staff.phase_approvals import (
    CHANGE_PHASE_PERMISSION,
    Stores,
    approve,
    expire_overdue,
    may_decide,
    reject,
)

DECISION_REASON_MAX = 2000


class DecisionForm(forms.Form):
    reason = forms.CharField(
        label="Why",
        max_length=DECISION_REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="for the audit trail: what you checked before deciding",
    )


@admin.register(PhaseApproval)
class PhaseApprovalAdmin(ReadOnlyAdmin):
    list_display = (
        "requested_at",
        "step",
        "why_four_eyes",
        "requested_by",
        "state",
        "decided_by",
        "decided",
        "decide_link",
    )
    list_filter = ("state",)
    search_fields = ("requested_by", "decided_by")
    fields = (
        "step",
        "why_four_eyes",
        "note",
        "override_reason",
        "requested_by",
        "requested_at",
        "expires_at",
        "state",
        "decided_by",
        "decided_at",
        "decision_reason",
        "outcome",
    )
    readonly_fields = fields

    @admin.display(description="step")
    def step(self, row: PhaseApproval) -> str:
        shares = [
            f"{name} {value}%"
            for name, value in (
                ("rollout", row.rollout_percent),
                ("shadow", row.shadow_percent),
                ("dual-write share", row.dual_write_percent),
            )
            if value is not None
        ]
        return f"phase {row.from_phase} -> {row.to_phase}" + (
            f" ({', '.join(shares)})" if shares else ""
        )

    @admin.display(description="decided", ordering="decided_at")
    def decided(self, row: PhaseApproval) -> str:
        return when(row.decided_at) if row.decided_at else ""

    @admin.display(description="")
    def decide_link(self, row: PhaseApproval) -> str:
        if row.state != PhaseApproval.State.PENDING:
            return ""
        return format_html(
            '<a class="decide-link" href="{}">Decide</a>',
            reverse("admin:staff_phaseapproval_decide", args=[row.pk]),
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        expire_overdue()  # a request past its time shows as expired
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[Any]:
        decide = path(
            "<int:approval_pk>/decide/",
            self.admin_site.admin_view(self.decide_view),
            name="staff_phaseapproval_decide",
        )
        return [decide, *super().get_urls()]

    def decide_view(self, request: HttpRequest, approval_pk: int) -> HttpResponse:
        """The request, and a form to approve or reject it with a reason."""
        if not request.user.has_perm(CHANGE_PHASE_PERMISSION):
            raise PermissionDenied
        expire_overdue()
        approval = get_object_or_404(PhaseApproval, pk=approval_pk)
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            return self._decide(request, approval, reason=form.cleaned_data["reason"])
        return render(
            request,
            "admin/staff/phaseapproval/decide.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Phase change request {approval.pk}",
                "approval": approval,
                "step": self.step(approval),
                "form": form,
                "cannot_decide": may_decide(request.user, approval),
                "pending": approval.state == PhaseApproval.State.PENDING,
            },
        )

    def _decide(
        self, request: HttpRequest, approval: PhaseApproval, *, reason: str
    ) -> HttpResponse:
        decider = request.user
        try:
            if "_reject" in request.POST:
                reject(approval, rejecter=decider, reason=reason)
                self.message_user(
                    request, f"Rejected request {approval.pk}: the phase is unchanged."
                )
            else:
                runtime = process_runtime()
                report = approve(
                    approval,
                    approver=decider,
                    reason=reason,
                    stores=Stores(
                        mongo=runtime.mongo,
                        tigerbeetle=runtime.batches,
                        on_share_raised=tasks.queue_share_intake,
                    ),
                )
                self.message_user(
                    request,
                    f"Approved: the migration is now in phase {int(report.after)} "
                    f"(mirrored {report.mirrored}, copied back {report.copied_back}).",
                    messages.SUCCESS,
                )
        except ApprovalRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
        except InvalidPhaseChange as exc:
            self.message_user(request, f"Approved, but refused: {exc}", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:staff_phaseapproval_changelist"))
