"""A reconciliation case's page: the wallet's re-check, and for a transfer registry case its
repair (`migration.registry_repair`), taken by support with its own permission and audited
twice: as an action on a blocker (`BlockerAction`) and in the transaction's admin history
(Django's LogEntry, as a void is)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from backoffice.links import key_params, wallet_url
from domain import errors
from domain.ids import WalletKey
from ledger.backends import LedgerUnavailable
from migration.models import ReconciliationMismatch
from migration.registry_repair import Repair, RepairRefused
from migration.runtime import process_runtime
from registry.models import WalletTransfer

Kind = ReconciliationMismatch.Kind
REPAIR_PERMISSION = "migration.repair_transfer_registry"

# What each transfer registry case means, and what mends it.
REPAIRS = {
    Kind.NOT_REGISTERED: (
        "Register it",
        "Registers the transaction TigerBeetle holds, under the transaction id you give: the "
        "id must be the one TigerBeetle's transfer id derives from (the id is offered when the "
        "wallet's MongoDB log holds it). A void registers its voided transaction, as voided. "
        "What MongoDB lacks is copied back to it.",
    ),
    Kind.VOID_NOT_MARKED: (
        "Mark it voided",
        "Marks the registered transaction voided, with TigerBeetle's void and its time. If "
        "MongoDB has it posted, the void is copied back to MongoDB.",
    ),
    Kind.TRANSFER_DIFFERS: (
        "Correct the registered amount",
        "Sets the registered amount to what TigerBeetle holds for the transfer (TigerBeetle's "
        "transfers are immutable: the registry follows them). Only when nothing but the "
        "amount differs.",
    ),
}
MISSING_EXPLAINED = (
    "TigerBeetle does not hold this registered transfer. It cannot be repaired from the "
    "back-office: registering or posting money TigerBeetle does not hold would invent it. "
    "Re-check the wallet; if the transaction is in MongoDB's log and its entry is parked or "
    "pending, requeue it (the mirror posts it); otherwise hand the case to engineering with "
    "this page (docs/migration.md, transfer registry differences)."
)


def case_context(request: HttpRequest, mismatch: ReconciliationMismatch) -> dict[str, Any]:
    """What the case's page offers this person."""
    context: dict[str, Any] = {"mismatch": mismatch}
    if mismatch.client_id:
        key = WalletKey.from_row(mismatch)
        context["recheck_params"] = key_params(key)
        context["case_wallet_url"] = wallet_url(key)
        context["can_recheck"] = (
            request.user.has_perm("migration.recheck_wallet")
            and mismatch.kind in ReconciliationMismatch.BALANCE_KINDS
        )
    if mismatch.kind == Kind.TRANSFER_MISSING:
        context["missing_explained"] = MISSING_EXPLAINED
    if mismatch.kind in REPAIRS and mismatch.resolved_at is None:
        label, explained = REPAIRS[Kind(mismatch.kind)]
        context["repair"] = {
            "label": label,
            "explained": explained,
            "allowed": request.user.has_perm(REPAIR_PERMISSION),
            "url": reverse("admin:migration_reconciliationmismatch_repair", args=[mismatch.pk]),
            "asks_transaction_id": mismatch.kind == Kind.NOT_REGISTERED,
            "suggested": _suggested(request, mismatch),
        }
    return context


def _repair(request: HttpRequest) -> Repair:
    runtime = process_runtime()
    return Repair(
        tigerbeetle=runtime.batches, mongo=runtime.mongo, actor=request.user.get_username()
    )


def _suggested(request: HttpRequest, mismatch: ReconciliationMismatch) -> str:
    if mismatch.kind != Kind.NOT_REGISTERED or not request.user.has_perm(REPAIR_PERMISSION):
        return ""
    try:
        return _repair(request).suggested_transaction_id(mismatch)
    except LedgerUnavailable:
        return ""


@require_POST
def repair_view(request: HttpRequest, mismatch_pk: int) -> HttpResponse:
    """Make the case's repair; back to the case with what came of it."""
    if not request.user.has_perm(REPAIR_PERMISSION):
        raise PermissionDenied("Repairing the transfer registry needs its own permission.")
    mismatch = get_object_or_404(ReconciliationMismatch, pk=mismatch_pk)
    repair = _repair(request)
    try:
        if mismatch.kind == Kind.NOT_REGISTERED:
            message = repair.register(
                mismatch, transaction_id=request.POST.get("transaction_id", "").strip()
            )
        elif mismatch.kind == Kind.VOID_NOT_MARKED:
            message = repair.mark_voided(mismatch)
        elif mismatch.kind == Kind.TRANSFER_DIFFERS:
            message = repair.correct_amount(mismatch)
        else:
            raise RepairRefused(MISSING_EXPLAINED)
    except RepairRefused as exc:
        messages.error(request, f"Not repaired: {exc.message}")
    except (LedgerUnavailable, errors.StoreUnavailable) as exc:
        messages.error(request, f"Not repaired: a store did not answer ({exc}); try again.")
    else:
        _log_in_history(request, mismatch, message=message)
        messages.success(request, message)
    return HttpResponseRedirect(
        reverse("admin:migration_reconciliationmismatch_change", args=[mismatch.pk])
    )


def _log_in_history(
    request: HttpRequest, mismatch: ReconciliationMismatch, *, message: str
) -> None:
    """The transaction's admin history gets the repair (who, when, what)."""
    transaction_id = request.POST.get("transaction_id", "").strip() or mismatch.transaction_id
    row = WalletTransfer.objects.filter(transaction_id=transaction_id).first()
    if row is None or request.user.pk is None:
        return
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type=ContentType.objects.get_for_model(WalletTransfer),
        object_id=str(row.pk),
        object_repr=f"transaction {row.transaction_id}"[:200],
        action_flag=ADDITION if mismatch.kind == Kind.NOT_REGISTERED else CHANGE,
        change_message=f"Repaired from TigerBeetle (reconciliation case {mismatch.pk}): {message}",
    )
