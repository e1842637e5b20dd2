"""Records the staff sign-in audit (staff.models.AuthEvent) from Django's auth signals,
django-axes' lockout signal, and changes to who holds which permission or group.

Signals, because every path passes them: the admin's login form, `manage.py shell`, the user
and group admin pages, and data migrations alike. Who acted comes from the request's actor
(backoffice.middleware.FlagActorMiddleware), "system" outside a request.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from flags.audit import current_actor
from staff.lockout import client_ip_address
from staff.models import AuthEvent

User = get_user_model()
_CHANGES = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}
# The account flags that grant or take away access, audited like permissions.
_ACCESS_FLAGS = ("is_active", "is_staff", "is_superuser")


def record(kind: str, username: str, *, request: HttpRequest | None = None, **fields: Any) -> None:
    AuthEvent.objects.create(
        kind=kind,
        username=username,
        ip_address=client_ip_address(request) if request else None,
        **fields,
    )


@receiver(user_logged_in, dispatch_uid="staff_audit_login")
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record(AuthEvent.Kind.LOGIN, user.get_username(), request=request)


@receiver(user_logged_out, dispatch_uid="staff_audit_logout")
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(AuthEvent.Kind.LOGOUT, user.get_username(), request=request)


@receiver(user_login_failed, dispatch_uid="staff_audit_login_failed")
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in credentials; only the name is kept.
    username = str(credentials.get(User.USERNAME_FIELD, ""))[:150]
    record(AuthEvent.Kind.LOGIN_FAILED, username, request=request)


@receiver(user_locked_out, dispatch_uid="staff_audit_locked_out")
def _locked_out(
    sender: Any, request: HttpRequest | None, username: str | None, **kwargs: Any
) -> None:
    record(AuthEvent.Kind.LOCKED_OUT, (username or "")[:150], request=request)


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="staff_audit_groups")
def _groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action not in _CHANGES:
        return
    if reverse:  # a group's members changed: one event per user
        for user in User.objects.filter(pk__in=pk_set or ()):
            _audit_change(AuthEvent.Kind.GROUPS_CHANGED, user.get_username(), action, [instance])
        return
    groups = list(Group.objects.filter(pk__in=pk_set or ()))
    _audit_change(AuthEvent.Kind.GROUPS_CHANGED, instance.get_username(), action, groups)


@receiver(m2m_changed, sender=User.user_permissions.through, dispatch_uid="staff_audit_perms")
def _user_permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action not in _CHANGES:
        return
    if reverse:  # a permission's holders changed
        for user in User.objects.filter(pk__in=pk_set or ()):
            _audit_change(
                AuthEvent.Kind.PERMISSIONS_CHANGED, user.get_username(), action, [instance]
            )
        return
    permissions = list(Permission.objects.filter(pk__in=pk_set or ()))
    _audit_change(AuthEvent.Kind.PERMISSIONS_CHANGED, instance.get_username(), action, permissions)


@receiver(m2m_changed, sender=Group.permissions.through, dispatch_uid="staff_audit_group_perms")
def _group_permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action not in _CHANGES or reverse:
        return
    permissions = list(Permission.objects.filter(pk__in=pk_set or ()))
    names = ", ".join(_permission_name(p) for p in permissions) or "all"
    record(
        AuthEvent.Kind.PERMISSIONS_CHANGED,
        "",
        actor=current_actor.get(),
        details=f"group {instance.name}: {_CHANGES[action]} {names}",
    )


@receiver(pre_save, sender=User, dispatch_uid="staff_audit_access_flags")
def _access_flags_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk is None:
        return
    before = User.objects.filter(pk=instance.pk).values(*_ACCESS_FLAGS).first()
    if before is None:
        return
    changed = [
        f"{flag} {before[flag]} -> {getattr(instance, flag)}"
        for flag in _ACCESS_FLAGS
        if before[flag] != getattr(instance, flag)
    ]
    if changed:
        record(
            AuthEvent.Kind.PERMISSIONS_CHANGED,
            instance.get_username(),
            actor=current_actor.get(),
            details="; ".join(changed),
        )


def _audit_change(kind: str, username: str, action: str, objects: list[Any]) -> None:
    names = ", ".join(_permission_name(o) if isinstance(o, Permission) else str(o) for o in objects)
    record(
        kind, username, actor=current_actor.get(), details=f"{_CHANGES[action]} {names or 'all'}"
    )


def _permission_name(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"
