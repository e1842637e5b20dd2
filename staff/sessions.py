"""Ending a staff member's sessions on every device ("sign out everywhere")."""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.models import Session
from django.utils import timezone

from staff.models import AuthEvent


def sign_out_everywhere(user: Any, *, actor: str) -> int:
    """Ends every session of the user (database sessions: each is read to find its user),
    audited; the number ended. Staff hold few sessions; API callers hold none."""
    ended = 0
    wanted = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == wanted:
            session.delete()
            ended += 1
    AuthEvent.objects.create(
        kind=AuthEvent.Kind.SIGNED_OUT_EVERYWHERE,
        username=user.get_username(),
        actor=actor,
        details=f"{ended} session(s) ended",
    )
    return ended
