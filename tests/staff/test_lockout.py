"""Lockout after failed sign-ins (django-axes, issue 27): per account and address, for
LOGIN_LOCKOUT_S, shown in plain words, unlocked by staff with staff.unlock_account, audited."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission, User
from django.test import Client

from staff.models import AuthEvent
from tests.backoffice.conftest import PASSWORD, client_for, user_in

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def _limit_of_three(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3


def sign_in(username: str, password: str, *, ip: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})


def fail_until_locked(user: User, *, ip: str = "10.0.0.1") -> Any:
    answers = [sign_in(user.username, "wrong password", ip=ip) for _ in range(3)]
    return answers[-1]


def test_the_third_failure_locks_the_account_from_that_address_in_plain_words() -> None:
    user = user_in("Support")

    locked = fail_until_locked(user)

    assert locked.status_code == 429
    assert "Too many failed sign-ins for this account" in locked.content.decode()
    assert int(locked["Retry-After"]) == 900


def test_a_locked_account_is_refused_even_with_the_right_password() -> None:
    user = user_in("Support")
    fail_until_locked(user)

    answer = sign_in(user.username, PASSWORD)

    assert answer.status_code == 429
    assert "_auth_user_id" not in answer.client.session


def test_the_lock_holds_only_for_that_account_and_address() -> None:
    user, other = user_in("Support"), user_in("Support")
    fail_until_locked(user)

    from_elsewhere = sign_in(user.username, PASSWORD, ip="10.0.0.2")
    other_account = sign_in(other.username, PASSWORD)

    assert from_elsewhere.status_code == 302
    assert other_account.status_code == 302


def test_failures_below_the_limit_are_forgotten_after_a_successful_sign_in() -> None:
    user = user_in("Support")
    sign_in(user.username, "wrong password")
    sign_in(user.username, "wrong password")
    assert sign_in(user.username, PASSWORD).status_code == 302

    sign_in(user.username, "wrong password")
    answer = sign_in(user.username, "wrong password")

    assert answer.status_code == 200  # the form again, not locked


def test_the_lockout_is_audited_with_the_failures_before_it() -> None:
    user = user_in("Support")

    fail_until_locked(user)

    events = AuthEvent.objects.filter(
        username=user.username, kind__in=["login_failed", "locked_out"]
    )
    kinds = Counter(events.values_list("kind", flat=True))
    assert kinds == {"login_failed": 3, "locked_out": 1}
    assert AuthEvent.objects.filter(kind="locked_out").get().ip_address == "10.0.0.1"


def unlock(client: Client, user: User) -> Any:
    attempt = AccessAttempt.objects.get(username=user.username)
    return client.post(
        "/admin/axes/accessattempt/",
        {"action": "unlock", "_selected_action": [attempt.pk]},
        follow=True,
    )


def test_staff_with_the_unlock_permission_unlock_an_account_and_it_is_audited() -> None:
    user = user_in("Support")
    fail_until_locked(user)
    unlocker = user_in(None)
    unlocker.user_permissions.add(
        Permission.objects.get(codename="unlock_account"),
        Permission.objects.get(codename="view_accessattempt"),
    )

    answer = unlock(client_for(unlocker), user)

    assert "Unlocked 1 account(s)." in answer.content.decode()
    assert sign_in(user.username, PASSWORD).status_code == 302
    event = AuthEvent.objects.get(kind="unlocked")
    assert (event.username, event.actor) == (user.username, unlocker.username)


def test_staff_without_the_unlock_permission_cannot_unlock() -> None:
    user = user_in("Support")
    fail_until_locked(user)
    auditor = user_in("Auditor")

    unlock(client_for(auditor), user)

    assert AccessAttempt.objects.filter(username=user.username).exists()
    assert sign_in(user.username, PASSWORD).status_code == 429
    assert not AuthEvent.objects.filter(kind="unlocked").exists()
