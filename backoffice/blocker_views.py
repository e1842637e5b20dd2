"""The admin's buttons for the actions on what blocks the migration (backoffice/blockers.py):
each a POST with its own permission, answered with a message on the page the person came
from."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from backoffice import blockers
from backoffice.links import back_url
from domain import errors
from domain.ids import WalletKey
from ledger.service import checked_id
from migration import criteria

# Each blocker action: (URL name, permission, button label, what the page says to one who
# lacks the permission).
ACTIONS = {
    criteria.ACTION_REQUEUE_PARKED: (
        "admin:migration-requeue-parked",
        "migration.requeue_parked_entries",
        "Requeue the parked entries",
        "Support or Product can requeue them (Can requeue parked outbox entries).",
    ),
    criteria.ACTION_RECONCILE: (
        "admin:migration-reconcile-now",
        "migration.run_reconciliation",
        "Run a reconciliation now",
        "Support or Product can run one (Can run a reconciliation now).",
    ),
    criteria.ACTION_RECHECK_MISMATCHED: (
        "admin:migration-recheck-mismatched",
        "migration.recheck_wallet",
        "Re-check these wallets now",
        "Support or Product can re-check them (Can re-check a wallet).",
    ),
}


def _answer(request: HttpRequest, outcome: blockers.Outcome) -> HttpResponse:
    messages.add_message(
        request, messages.SUCCESS if outcome.ok else messages.WARNING, outcome.message
    )
    return HttpResponseRedirect(back_url(request, reverse("admin:migration-dashboard")))


def _wallet_named(request: HttpRequest) -> WalletKey | None:
    """The wallet the form names (client_id, country, currency, issuer), or None for all."""
    if not request.POST.get("client_id"):
        return None
    try:
        key = WalletKey.from_mapping(request.POST)
        checked_id(key.client_id, field="client_id")
    except KeyError as exc:
        raise errors.ValidationFailed(
            "A wallet is named by client_id, country and currency."
        ) from exc
    return key


@require_POST
def requeue_parked_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("migration.requeue_parked_entries"):
        raise PermissionDenied("Requeueing parked entries needs its own permission.")
    try:
        key = _wallet_named(request)
    except errors.WalletError as exc:
        return _answer(request, blockers.Outcome(False, f"Nothing requeued: {exc.message}"))
    return _answer(request, blockers.requeue_parked(actor=request.user.get_username(), key=key))


@require_POST
def reconcile_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("migration.run_reconciliation"):
        raise PermissionDenied("Running a reconciliation needs its own permission.")
    return _answer(request, blockers.queue_reconciliation(actor=request.user.get_username()))


@require_POST
def recheck_mismatched_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("migration.recheck_wallet"):
        raise PermissionDenied("Re-checking wallets needs its own permission.")
    return _answer(request, blockers.recheck_mismatched(actor=request.user.get_username()))
