"""Four eyes on large voids (issue 27): a void of more than its currency's amount in
FOUR_EYES_VOID_ABOVE (in that currency; "*" for every currency not named) is requested, and
made only when another staff member approves."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from domain.money import from_minor_units
from domain.wallets import TransactionRecord
from staff.models import VoidApproval


class ApprovalRefused(Exception):
    """The request or the decision is not allowed; the message says why, to the person."""


def void_threshold(currency: str) -> Decimal | None:
    """The amount above which a void in `currency` needs four eyes: its own in
    FOUR_EYES_VOID_ABOVE, else that of every other currency ("*"); None: never."""
    thresholds = settings.FOUR_EYES_VOID_ABOVE
    return thresholds.get(currency, thresholds.get("*"))


def needs_second_person(record: TransactionRecord) -> bool:
    threshold = void_threshold(record.key.currency)
    if threshold is None:
        return False
    return from_minor_units(record.amount_minor, record.key.currency) > threshold


def request_void(record: TransactionRecord, *, requested_by: str, reason: str) -> VoidApproval:
    try:
        with transaction.atomic():
            return VoidApproval.objects.create(
                transaction_id=record.transaction_id,
                amount_minor=record.amount_minor,
                currency=record.key.currency,
                reason=reason,
                requested_by=requested_by,
            )
    except IntegrityError as exc:
        raise ApprovalRefused(
            f"A void of {record.transaction_id} already waits for approval."
        ) from exc


def check_decider(approval: VoidApproval, decided_by: str) -> None:
    """Nobody decides their own request, nor one already decided."""
    if approval.state != VoidApproval.State.PENDING:
        raise ApprovalRefused(f"The void of {approval.transaction_id} was already decided.")
    if approval.requested_by == decided_by:
        raise ApprovalRefused(
            f"You asked for the void of {approval.transaction_id}: another person approves it."
        )


def decide(approval: VoidApproval, *, state: str, decided_by: str, outcome: str) -> None:
    approval.state = state
    approval.decided_by = decided_by
    approval.decided_at = timezone.now()
    approval.outcome = outcome
    approval.save(update_fields=["state", "decided_by", "decided_at", "outcome"])
