"""Staff sessions (issue 27): they end after SESSION_IDLE_TIMEOUT_S without a request, on a
password change (every other device), and when an administrator signs a user out
everywhere (audited)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from staff.models import AuthEvent
from tests.backoffice.conftest import PASSWORD, client_for, user_in

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


def signed_in(client: Client) -> bool:
    return client.get(INDEX).status_code == 200


def test_the_idle_timeout_is_thirty_minutes_by_default() -> None:
    assert settings.SESSION_IDLE_TIMEOUT_S == 1800
    assert settings.SESSION_COOKIE_AGE == 1800
    assert settings.SESSION_SAVE_EVERY_REQUEST is True


def test_a_session_idle_past_the_timeout_is_signed_out() -> None:
    client = client_for(user_in("Support"))
    assert signed_in(client)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))

    answer = client.get(INDEX)

    assert answer.status_code == 302
    assert answer["Location"].startswith("/admin/login/")


def test_each_request_starts_the_idle_time_again() -> None:
    client = client_for(user_in("Support"))
    Session.objects.update(expire_date=timezone.now() + timedelta(seconds=5))

    assert signed_in(client)

    expire_date = Session.objects.get().expire_date
    assert expire_date > timezone.now() + timedelta(seconds=1700)


def test_a_password_change_signs_out_every_other_session(settings: Any) -> None:
    user = user_in("Support")
    elsewhere, here = client_for(user), client_for(user)

    here.post(
        "/admin/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "a new long pass",
            "new_password2": "a new long pass",
        },
    )

    assert signed_in(here)
    assert not signed_in(elsewhere)


def sign_out_everywhere(client: Client, user_pk: int) -> Any:
    return client.post(
        "/admin/auth/user/",
        {"action": "sign_out_everywhere", "_selected_action": [user_pk]},
        follow=True,
    )


def test_an_administrator_signs_a_user_out_everywhere_and_it_is_audited() -> None:
    user = user_in("Support")
    laptop, phone = client_for(user), client_for(user)
    admin = user_in(None, superuser=True)

    answer = sign_out_everywhere(client_for(admin), user.pk)

    assert "Ended 2 session(s) of 1 user(s)." in answer.content.decode()
    assert not signed_in(laptop)
    assert not signed_in(phone)
    event = AuthEvent.objects.get(kind="signed_out_everywhere")
    assert (event.username, event.actor) == (user.username, admin.username)


def test_signing_out_everywhere_needs_its_permission() -> None:
    user = user_in("Support")
    laptop = client_for(user)
    viewer = user_in(None)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_user"),
        Permission.objects.get(codename="change_user"),
    )

    sign_out_everywhere(client_for(viewer), user.pk)

    assert signed_in(laptop)
    assert not AuthEvent.objects.filter(kind="signed_out_everywhere").exists()
