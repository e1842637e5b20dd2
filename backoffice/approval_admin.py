"""Void approvals (four eyes, issue 27): a void above FOUR_EYES_VOID_ABOVE waits here for a
second staff member holding staff.approve_void, who approves (the void is made through the
wallet service, in the requester's name) or rejects it. Nobody decides their own request."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backoffice.admin_base import ReadOnlyAdmin, format_money
from domain import errors
from migration.runtime import process_runtime
from staff.four_eyes import ApprovalRefused, check_decider, decide
from staff.models import VoidApproval


@admin.register(VoidApproval)
class VoidApprovalAdmin(ReadOnlyAdmin):
    list_display = (
        "requested_at",
        "transaction_id",
        "amount",
        "reason",
        "requested_by",
        "state",
        "decided_by",
        "decided_at",
        "outcome",
    )
    list_filter = ("state",)
    search_fields = ("transaction_id", "requested_by", "decided_by")
    actions = ["approve", "reject"]

    @admin.display(description="amount", ordering="amount_minor")
    def amount(self, row: VoidApproval) -> str:
        return format_money(row.amount_minor, row.currency)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return user.has_perm("staff.approve_void") and user.has_perm("registry.void_wallettransfer")

    @admin.action(description="Approve: void the transaction now", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[VoidApproval]) -> None:
        approver = request.user.get_username()
        service = process_runtime().wallet_service()
        for approval in queryset:
            try:
                check_decider(approval, approver)
            except ApprovalRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            try:
                service.void_transaction(
                    approval.transaction_id,
                    voided_by=approval.requested_by,
                    reason=f"{approval.reason} (approved by {approver})",
                )
            except errors.WalletError as exc:
                decide(
                    approval,
                    state=VoidApproval.State.REFUSED,
                    decided_by=approver,
                    outcome=exc.message,
                )
                self.message_user(request, f"Not voided: {exc.message}", messages.ERROR)
            else:
                decide(
                    approval, state=VoidApproval.State.VOIDED, decided_by=approver, outcome="voided"
                )
                self.message_user(
                    request, f"Approved: voided {approval.transaction_id}.", messages.SUCCESS
                )

    @admin.action(description="Reject: leave the transaction as it is", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[VoidApproval]) -> None:
        rejecter = request.user.get_username()
        for approval in queryset:
            try:
                check_decider(approval, rejecter)
            except ApprovalRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            decide(
                approval, state=VoidApproval.State.REJECTED, decided_by=rejecter, outcome="rejected"
            )
            self.message_user(request, f"Rejected the void of {approval.transaction_id}.")
