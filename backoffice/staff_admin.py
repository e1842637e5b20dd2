"""Staff accounts in the admin (issue 27): the sign-in audit and the current lockouts, both
read-only (an auditor reads them), unlocking a locked account, and signing a user out
everywhere. Both actions need their own permission and are audited."""

from __future__ import annotations

from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from backoffice.admin_base import ReadOnlyAdmin
from staff.enrolment import issue_code, needs_code
from staff.models import AuthEvent
from staff.sessions import sign_out_everywhere
from staff.two_factor import reset_second_factor

User = get_user_model()


@admin.register(AuthEvent)
class AuthEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "username", "ip_address", "actor", "details")
    list_filter = ("kind",)
    search_fields = ("username", "ip_address", "actor", "details")
    date_hierarchy = "at"


@admin.register(AccessAttempt)
class LockoutAdmin(ReadOnlyAdmin):
    """django-axes' failure counts per account and address; one at the limit is locked."""

    list_display = ("username", "ip_address", "failures_since_start", "attempt_time", "locked")
    search_fields = ("username", "ip_address")
    fields = ("username", "ip_address", "failures_since_start", "attempt_time", "user_agent")
    readonly_fields = fields
    actions = ["unlock"]

    @admin.display(description="locked", boolean=True)
    def locked(self, attempt: AccessAttempt) -> bool:
        return bool(attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT)

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("staff.unlock_account")

    @admin.action(description="Unlock: allow signing in again now", permissions=["unlock"])
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        actor = request.user.get_username()
        with transaction.atomic():
            attempts = list(queryset.select_for_update())
            for attempt in attempts:
                AuthEvent.objects.create(
                    kind=AuthEvent.Kind.UNLOCKED,
                    username=attempt.username or "",
                    ip_address=attempt.ip_address,
                    actor=actor,
                    details=f"after {attempt.failures_since_start} failed sign-in(s)",
                )
                attempt.delete()
        self.message_user(request, f"Unlocked {len(attempts)} account(s).", messages.SUCCESS)


class StaffUserAdmin(UserAdmin):
    """Django's user admin with "sign out everywhere"."""

    actions = ["sign_out_everywhere", "reset_second_factor", "issue_enrolment_code"]

    def has_sign_out_everywhere_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("staff.sign_out_everywhere")

    @admin.action(
        description="Sign out everywhere: end every session", permissions=["sign_out_everywhere"]
    )
    def sign_out_everywhere(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        actor = request.user.get_username()
        ended = sum(sign_out_everywhere(user, actor=actor) for user in queryset)
        self.message_user(
            request, f"Ended {ended} session(s) of {queryset.count()} user(s).", messages.SUCCESS
        )

    def has_reset_second_factor_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("staff.reset_second_factor")

    @admin.action(
        description="Reset second factor: enrol a new authenticator at the next sign-in",
        permissions=["reset_second_factor"],
    )
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        actor = request.user.get_username()
        for user in queryset:
            reset_second_factor(user, actor=actor)
        again = (
            ' Each enrols again with a new enrolment code ("Issue an enrolment code").'
            if needs_code()
            else ""
        )
        self.message_user(
            request,
            f"Reset the second factor of {queryset.count()} user(s).{again}",
            messages.SUCCESS,
        )

    def has_issue_enrolment_code_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("staff.issue_enrolment_code")

    @admin.action(
        description="Issue an enrolment code: one-time, to enrol an authenticator",
        permissions=["issue_enrolment_code"],
    )
    def issue_enrolment_code(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """Shown once, here: the administrator hands each code over by another way than the
        password (staff/enrolment.py)."""
        actor = request.user.get_username()
        hours = settings.STAFF_2FA_ENROLMENT_CODE_TTL_S / 3600
        for user in queryset:
            code = issue_code(user, issued_by=actor)
            self.message_user(
                request,
                f"Enrolment code for {user.get_username()}: {code} (shown once; works once, "
                f"for {hours:g} hours; give it by another way than the password).",
                messages.WARNING,
            )


admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
