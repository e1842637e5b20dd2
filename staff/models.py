"""The staff sign-in audit: one row per sign-in, failure, lockout, unlock, sign-out
everywhere, and change to a staff member's permissions or groups. Rows are never changed."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuthEvent(models.Model):
    class Kind(models.TextChoices):
        LOGIN = "login", "Signed in"
        LOGIN_FAILED = "login_failed", "Sign-in failed"
        LOCKED_OUT = "locked_out", "Locked out"
        UNLOCKED = "unlocked", "Unlocked"
        LOGOUT = "logout", "Signed out"
        SIGNED_OUT_EVERYWHERE = "signed_out_everywhere", "Signed out everywhere"
        PERMISSIONS_CHANGED = "permissions_changed", "Permissions changed"
        GROUPS_CHANGED = "groups_changed", "Groups changed"
        SECOND_FACTOR_ENROLLED = "2fa_enrolled", "Enrolled an authenticator"
        SECOND_FACTOR_FAILED = "2fa_failed", "Wrong second-factor code"
        SECOND_FACTOR_RESET = "2fa_reset", "Second factor reset"
        ENROLMENT_CODE_ISSUED = "enrolment_code_issued", "Enrolment code issued"
        ENROLMENT_CODE_FAILED = "enrolment_code_failed", "Wrong enrolment code"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The account the event is about, as typed for a failed sign-in (it may not exist); blank
    # for a change of a group's permissions (the group is in details).
    username = models.CharField(max_length=150, blank=True, db_index=True)
    # Who acted, when someone else did (an unlock, a change of groups): their username.
    actor = models.CharField(max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    details = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        permissions = [
            ("unlock_account", "Can unlock a staff account locked after failed sign-ins"),
            ("sign_out_everywhere", "Can end every session of a staff account"),
            ("reset_second_factor", "Can reset a staff account's authenticator and codes"),
        ]
        verbose_name = "staff sign-in event"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.username}"


class VoidApproval(models.Model):
    """Four eyes on a large void (FOUR_EYES_VOID_ABOVE): the request waits here until another
    staff member approves (the void is made then) or rejects it. Who, when and why, both."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        VOIDED = "voided", "Approved and voided"
        REFUSED = "refused", "Approved, refused by the ledger"
        REJECTED = "rejected", "Rejected"

    transaction_id = models.CharField(max_length=255, db_index=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.TextField()
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # The ledger's answer to the approved void, or the rejection's note.
    outcome = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [("approve_void", "Can approve another person's void above the amount")]
        constraints = [
            models.UniqueConstraint(
                fields=["transaction_id"],
                condition=models.Q(state="pending"),
                name="one_pending_void_approval_per_transaction",
            )
        ]

    def __str__(self) -> str:
        return f"void of {self.transaction_id} asked by {self.requested_by}"


class PhaseApproval(models.Model):
    """Four eyes on the phase steps that matter most (FOUR_EYES_PHASE_CHANGES): a step that
    overrides a criterion, or enters or leaves phase 4, is filed here and nothing changes
    until another person holding flags.change_phase approves it (the step is then planned
    and taken with the gates as they are then) or rejects it. A request not decided within
    FOUR_EYES_PHASE_REQUEST_EXPIRY_S expires. Who, when and why, both; a break-glass step
    (`manage.py migration_phase --break-glass`) is kept here too."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved", "Approved, being taken"
        TAKEN = "taken", "Approved and taken"
        REFUSED = "refused", "Approved, refused by the step's checks"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired undecided"
        BREAK_GLASS = "break_glass", "Taken alone (break glass)"

    from_phase = models.PositiveSmallIntegerField()
    to_phase = models.PositiveSmallIntegerField()
    # The shares asked for (None: keep the current one), as the phase page and command take them.
    rollout_percent = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    shadow_percent = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    dual_write_percent = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)
    # Why the criterion is overridden (empty: no override asked for).
    override_reason = models.TextField(blank=True)
    # Why it needs four eyes, in words ("enters phase 4", "overrides the criterion").
    why_four_eyes = models.CharField(max_length=200)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # The approver's or rejecter's why; for a break-glass step, the emergency.
    decision_reason = models.TextField(blank=True)
    # What became of it: the step's report, its refusal, or the expiry.
    outcome = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"],
                condition=models.Q(state="pending"),
                name="one_pending_phase_approval",
            )
        ]

    def __str__(self) -> str:
        return f"phase {self.from_phase} -> {self.to_phase} asked by {self.requested_by}"

    @property
    def overrides(self) -> bool:
        return bool(self.override_reason)


class EnrolmentCode(models.Model):
    """An administrator's one-time code that lets one staff member enrol an authenticator
    (the first time, or after a reset): without it, someone who has only the password cannot
    enrol their own authenticator (STAFF_2FA_ENROLMENT_NEEDS_CODE). Kept as a SHA-256 digest
    (the code is random, 80 bits); shown once to the administrator, who hands it over by
    another way than the password."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolment_codes"
    )
    code_digest = models.CharField(max_length=64)
    issued_by = models.CharField(max_length=150)
    issued_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        permissions = [
            ("issue_enrolment_code", "Can issue a one-time code to enrol an authenticator")
        ]

    def __str__(self) -> str:
        return f"enrolment code for {self.user} by {self.issued_by}"
