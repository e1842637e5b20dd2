"""Four eyes on the phase steps that matter most (issue 27): a step that overrides its
criterion, or enters or leaves phase 4, is filed as a request (`staff.PhaseApproval`) and
nothing changes until another person holding `flags.change_phase` approves it. The approval
takes the step through `migration.phase_change.change_phase` with the gates as they are
then, in the requester's name with the approver on its audit row (`flags.PhaseChange`);
nobody decides their own request, and a request undecided after
FOUR_EYES_PHASE_REQUEST_EXPIRY_S expires. The phase page and `manage.py migration_phase`
both file through here; the command alone offers a break-glass step for an emergency with
nobody to approve, named and kept like a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.db import IntegrityError, transaction
from django.utils import timezone

from flags.phases import InvalidPhaseChange, Phase, current_state
from ledger.batches import LedgerBatches
from ledger.stores.mongo_store import MongoWalletStore
from migration.legacy_cases import REASON_LENGTH_MIN
from migration.phase_change import PhaseChangeReport, change_phase
from migration.phase_plan import OVERRIDE_PERMISSION, Override, StepPlan, override_asked
from staff.four_eyes import ApprovalRefused
from staff.models import PhaseApproval

log = logging.getLogger(__name__)
CHANGE_PHASE_PERMISSION = "flags.change_phase"
BREAK_GLASS = "break glass"
AnyUser = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class StepAsked:
    """A phase step as the page's form or the command's options ask for it."""

    phase: Phase
    note: str = ""
    rollout_percent: Decimal | None = None
    shadow_percent: Decimal | None = None
    dual_write_percent: Decimal | None = None
    # Why the criterion is overridden ("": no override asked for).
    override_reason: str = ""


@dataclass(frozen=True)
class Stores:
    """What taking a step needs (the process runtime's), and what follows a share's raise."""

    mongo: MongoWalletStore
    tigerbeetle: LedgerBatches
    on_share_raised: Callable[[], None] | None = None


def why_four_eyes(plan: StepPlan) -> str:
    """Why the planned step needs a second person, in words ("": it does not, or the
    setting is off)."""
    if not settings.FOUR_EYES_PHASE_CHANGES:
        return ""
    reasons = []
    if plan.enters_tigerbeetle_only:
        reasons.append("it enters phase 4")
    if plan.leaves_tigerbeetle_only:
        reasons.append("it leaves phase 4")
    if plan.overridden:
        reasons.append("it overrides its criterion")
    return " and ".join(reasons)


def request_step(asked: StepAsked, *, plan: StepPlan, requested_by: str) -> PhaseApproval:
    """File the step for a second person's approval; nothing changes now."""
    why = why_four_eyes(plan)
    assert why, "only a step that needs four eyes is filed"
    assert requested_by
    expire_overdue()
    try:
        with transaction.atomic():
            approval = PhaseApproval.objects.create(
                from_phase=int(plan.before.phase),
                to_phase=int(asked.phase),
                rollout_percent=asked.rollout_percent,
                shadow_percent=asked.shadow_percent,
                dual_write_percent=asked.dual_write_percent,
                note=asked.note,
                override_reason=asked.override_reason if plan.overridden else "",
                why_four_eyes=why[:200],
                requested_by=requested_by,
                expires_at=timezone.now()
                + timedelta(seconds=settings.FOUR_EYES_PHASE_REQUEST_EXPIRY_S),
            )
    except IntegrityError as exc:
        pending = PhaseApproval.objects.filter(state=PhaseApproval.State.PENDING).first()
        raise ApprovalRefused(
            f"A phase change already waits for approval ({pending}, request "
            f"{pending.pk if pending else '?'}): it is decided or expires first."
        ) from exc
    log.info("phase change request %d filed by %s: %s", approval.pk, requested_by, why)
    return approval


def expire_overdue() -> int:
    """Mark the pending requests past their time as expired (read lazily: on filing and
    deciding, and on the approvals' list)."""
    now = timezone.now()
    return PhaseApproval.objects.filter(
        state=PhaseApproval.State.PENDING, expires_at__lte=now
    ).update(
        state=PhaseApproval.State.EXPIRED,
        decided_at=now,
        outcome="expired undecided (FOUR_EYES_PHASE_REQUEST_EXPIRY_S)",
    )


def may_decide(user: AnyUser | None, approval: PhaseApproval) -> str:
    """Why `user` may not decide `approval` ("": they may). An override is decided only by
    someone who may override too."""
    if not (isinstance(user, PermissionsMixin) and user.is_active):
        return "Only an active staff member decides a phase change request."
    if not user.has_perm(CHANGE_PHASE_PERMISSION):
        return "Deciding a phase change request needs the permission to change the phase."
    if approval.overrides and not user.has_perm(OVERRIDE_PERMISSION):
        return "This request overrides a criterion: it is decided by someone who may override."
    if user.get_username() == approval.requested_by:
        return f"You asked for request {approval.pk}: another person decides it."
    return ""


def approve(
    approval: PhaseApproval, *, approver: AnyUser | None, reason: str, stores: Stores
) -> PhaseChangeReport:
    """Take the requested step now, with the gates as they are now, in the requester's name
    and with the approver on its audit row. Raises ApprovalRefused when `approver` may not
    decide it (nothing is recorded), InvalidPhaseChange when the step is refused (kept)."""
    approver_name = _claim(
        approval, user=approver, reason=reason, state=PhaseApproval.State.APPROVED
    )
    if current_state().phase != approval.from_phase:
        message = (
            f"the phase is {int(current_state().phase)} now, not {approval.from_phase} as when "
            "it was asked for: ask again"
        )
        _finish(approval, state=PhaseApproval.State.REFUSED, outcome=f"refused: {message}")
        raise InvalidPhaseChange(message)
    try:
        report = _take(approval, stores=stores, approved_by=approver_name)
    except InvalidPhaseChange as exc:
        _finish(approval, state=PhaseApproval.State.REFUSED, outcome=f"refused: {exc}")
        raise
    except Exception as exc:  # a failed dependency: closed as failed, not left "being taken"
        _finish(approval, state=PhaseApproval.State.REFUSED, outcome=f"failed: {exc!r}"[:2000])
        raise
    _finish(approval, state=PhaseApproval.State.TAKEN, outcome=_report_words(report))
    log.info("phase change request %d approved by %s and taken", approval.pk, approver_name)
    return report


def reject(approval: PhaseApproval, *, rejecter: AnyUser | None, reason: str) -> None:
    """Leave the phase as it is; the request is closed with who rejected it and why."""
    _claim(approval, user=rejecter, reason=reason, state=PhaseApproval.State.REJECTED)
    _finish(approval, state=PhaseApproval.State.REJECTED, outcome="rejected")


def break_glass(
    asked: StepAsked, *, plan: StepPlan, user: AnyUser | None, reason: str, stores: Stores
) -> PhaseChangeReport:
    """An emergency with nobody to approve (the command's `--break-glass --reason`): the
    step is taken at once by a person who may change the phase (and override, if it does),
    kept as a request marked break glass, its audit row saying so. Never silent."""
    if len(reason.strip()) < REASON_LENGTH_MIN:
        raise ApprovalRefused(
            f"A break-glass step needs a reason of at least {REASON_LENGTH_MIN} characters."
        )
    if not (isinstance(user, PermissionsMixin) and user.is_active) or not user.has_perm(
        CHANGE_PHASE_PERMISSION
    ):
        raise ApprovalRefused("A break-glass step is taken by a user who may change the phase.")
    name = user.get_username()
    approval = PhaseApproval.objects.create(
        from_phase=int(plan.before.phase),
        to_phase=int(asked.phase),
        rollout_percent=asked.rollout_percent,
        shadow_percent=asked.shadow_percent,
        dual_write_percent=asked.dual_write_percent,
        note=asked.note,
        override_reason=asked.override_reason if plan.overridden else "",
        why_four_eyes=(why_four_eyes(plan) or "not needed")[:200],
        requested_by=name,
        expires_at=timezone.now(),
        state=PhaseApproval.State.BREAK_GLASS,
        decided_by=name,
        decided_at=timezone.now(),
        decision_reason=reason.strip(),
    )
    log.warning("break-glass phase change by %s: %s", name, reason.strip())
    try:
        report = _take(approval, stores=stores, approved_by=BREAK_GLASS)
    except InvalidPhaseChange as exc:
        _finish(approval, state=PhaseApproval.State.BREAK_GLASS, outcome=f"refused: {exc}")
        raise
    _finish(approval, state=PhaseApproval.State.BREAK_GLASS, outcome=_report_words(report))
    return report


def _claim(approval: PhaseApproval, *, user: AnyUser | None, reason: str, state: str) -> str:
    """Decide the request once: a conditional update, so two people deciding it at the same
    moment cannot both take it. Returns the decider's name."""
    refusal = may_decide(user, approval)
    if refusal:
        raise ApprovalRefused(refusal)
    assert user is not None
    name = user.get_username()
    expire_overdue()
    now = timezone.now()
    claimed = PhaseApproval.objects.filter(
        pk=approval.pk, state=PhaseApproval.State.PENDING
    ).update(state=state, decided_by=name, decided_at=now, decision_reason=reason.strip())
    approval.refresh_from_db()
    if not claimed:
        raise ApprovalRefused(
            f"Request {approval.pk} is no longer waiting: {approval.get_state_display().lower()}."
        )
    return name


def _take(approval: PhaseApproval, *, stores: Stores, approved_by: str) -> PhaseChangeReport:
    return change_phase(
        Phase(approval.to_phase),
        actor=approval.requested_by,
        mongo=stores.mongo,
        tigerbeetle=stores.tigerbeetle,
        note=approval.note,
        rollout_percent=approval.rollout_percent,
        shadow_percent=approval.shadow_percent,
        dual_write_percent=approval.dual_write_percent,
        override=_requester_override(approval),
        on_share_raised=stores.on_share_raised,
        approved_by=approved_by,
    )


def _requester_override(approval: PhaseApproval) -> Override | None:
    """The requester's override as it stands now (their permission read again)."""
    if not approval.overrides:
        return None
    user = get_user_model().objects.filter(username=approval.requested_by).first()
    override = override_asked(user, reason=approval.override_reason)
    if user is None:
        return Override(approval.requested_by, permitted=False, reason=override.reason)
    return override


def _finish(approval: PhaseApproval, *, state: str, outcome: str) -> None:
    approval.state = state
    approval.outcome = outcome
    approval.save(update_fields=["state", "outcome"])


def _report_words(report: PhaseChangeReport) -> str:
    return (
        f"phase {int(report.before)} -> {int(report.after)} (mirrored {report.mirrored}, "
        f"copied back {report.copied_back})"
    )
