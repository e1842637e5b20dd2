"""Support's documented path for a legacy inconsistency (a legacy wallet whose own MongoDB
fields disagree, which nothing in the back-office can fix): on the reconciliation mismatches,
"Acknowledge as legacy inconsistencies" asks for a reason and records the decision (who,
when, why, the figures; `migration.legacy_cases`), audited in the mismatch's history too.
The decisions are listed, read-only: the phase gates and criteria set those wallets aside
while nothing else differs."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html

from backoffice.admin_base import ReadOnlyAdmin, format_money
from backoffice.links import wallet_url, when
from domain.ids import WalletKey
from migration.legacy_cases import (
    REASON_LENGTH_MIN,
    AcknowledgedCases,
    LegacyCaseRefused,
    acknowledge,
    differs_only_by_the_excess,
    historical_excess,
    is_legacy_inconsistency,
    refusal_of,
)
from migration.models import AcknowledgedLegacyCase, ReconciliationMismatch

ACKNOWLEDGE_PERMISSION = "migration.acknowledge_legacy_case"


class AcknowledgeForm(forms.Form):
    reason = forms.CharField(
        label="Why the difference is accepted",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 70}),
        min_length=REASON_LENGTH_MIN,
        max_length=2000,
        error_messages={
            "required": "Say why the difference is accepted: the decision is kept with it.",
            "min_length": f"Say why in at least {REASON_LENGTH_MIN} characters.",
        },
        help_text="e.g. the ticket and what the legacy system did; kept with your name",
    )


@admin.action(
    description="Acknowledge as legacy inconsistencies (support's decision, with a reason)"
)
def acknowledge_legacy_cases(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> TemplateResponse | None:
    """The admin action: the chosen mismatches, which of them can be acknowledged, and a
    mandatory reason; on confirmation, one decision per wallet, each audited."""
    if not request.user.has_perm(ACKNOWLEDGE_PERMISSION):
        raise PermissionDenied
    mismatches = list(queryset.select_related("run"))
    form = AcknowledgeForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        _acknowledge_each(modeladmin, request, mismatches, reason=form.cleaned_data["reason"])
        return None  # back to the list, with a message per wallet
    rows = [(mismatch, refusal_of(mismatch)) for mismatch in mismatches]
    return TemplateResponse(
        request,
        "admin/migration/acknowledge_legacy_cases.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Acknowledge legacy inconsistencies",
            "opts": modeladmin.model._meta,
            "rows": rows,
            "eligible": sum(1 for _, refused in rows if not refused),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )


def _acknowledge_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    mismatches: list[ReconciliationMismatch],
    *,
    reason: str,
) -> None:
    actor = request.user.get_username()
    for mismatch in mismatches:
        try:
            case = acknowledge(mismatch, actor=actor, reason=reason)
        except LegacyCaseRefused as exc:
            modeladmin.message_user(request, f"Not acknowledged: {exc}", messages.ERROR)
            continue
        modeladmin.log_change(
            request, mismatch, f"Acknowledged as a legacy inconsistency: {case.reason}"
        )
        modeladmin.message_user(
            request,
            f"{WalletKey.from_row(case).describe()}: acknowledged as a legacy inconsistency "
            f"(MongoDB's total received exceeds available + spent by "
            f"{format_money(case.historical_excess_minor, case.currency)}). The phase gates "
            "and criteria now set it aside while nothing else differs.",
            messages.SUCCESS,
        )


def with_legacy_decisions(mismatches: QuerySet) -> QuerySet:
    """Each mismatch with its wallet's acknowledged excess, by whom and when (None without a
    decision), for `legacy_status`: one query for the whole page."""
    decision = AcknowledgedLegacyCase.objects.filter(
        client_id=OuterRef("client_id"),
        country=OuterRef("country"),
        currency=OuterRef("currency"),
        issuer=OuterRef("issuer"),
    )
    return mismatches.annotate(
        legacy_excess_minor=Subquery(decision.values("historical_excess_minor")[:1]),
        legacy_acknowledged_by=Subquery(decision.values("acknowledged_by")[:1]),
        legacy_acknowledged_at=Subquery(decision.values("acknowledged_at")[:1]),
    )


def legacy_status(mismatch: ReconciliationMismatch) -> str:
    """For the mismatch list (annotated by `with_legacy_decisions`): an acknowledged legacy
    case set aside, one support could acknowledge, or neither ("")."""
    excess = getattr(mismatch, "legacy_excess_minor", None)
    if excess is not None and differs_only_by_the_excess(mismatch, excess_minor=excess):
        acknowledged_by = getattr(mismatch, "legacy_acknowledged_by", "")
        acknowledged_at = getattr(mismatch, "legacy_acknowledged_at", None)
        return f"legacy case acknowledged by {acknowledged_by}, {when(acknowledged_at)}: set aside"
    if excess is None and is_legacy_inconsistency(mismatch):
        excess_now = historical_excess(mismatch)
        if excess_now is not None and differs_only_by_the_excess(mismatch, excess_minor=excess_now):
            return "legacy inconsistency: MongoDB's fields disagree; support can acknowledge it"
    return ""


def set_aside_pks(mismatches: QuerySet, cases: AcknowledgedCases) -> list[int]:
    """The mismatches among `mismatches` that acknowledged legacy cases set aside."""
    if not cases:
        return []
    candidates = mismatches.filter(
        kind=ReconciliationMismatch.Kind.BALANCE, client_id__in=cases.client_ids
    )
    return [mismatch.pk for mismatch in candidates if cases.sets_aside(mismatch)]


@admin.register(AcknowledgedLegacyCase)
class AcknowledgedLegacyCaseAdmin(ReadOnlyAdmin):
    list_display = ("acknowledged_at", "wallet", "excess", "acknowledged_by", "reason")
    search_fields = ("client_id__exact",)
    search_help_text = "Exact client id (case-sensitive)."

    @admin.display(description="wallet", ordering="client_id")
    def wallet(self, case: AcknowledgedLegacyCase) -> str:
        key = WalletKey.from_row(case)
        return format_html(
            '<a class="wallet-link" href="{}">{}</a>', wallet_url(key), key.describe()
        )

    @admin.display(description="MongoDB's total received beyond available + spent")
    def excess(self, case: AcknowledgedLegacyCase) -> str:
        return format_money(case.historical_excess_minor, case.currency)
