"""The staff sign-in audit (issue 27): sign-ins, failures, permission and group changes are
recorded, and listed for the Auditor role, which reads but cannot act."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from staff.models import AuthEvent
from tests.backoffice.conftest import PASSWORD, client_for, user_in
from tests.roles import role

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def test_a_successful_sign_in_is_recorded_with_its_address() -> None:
    user = user_in("Support")

    Client(REMOTE_ADDR="10.1.2.3").post(LOGIN, {"username": user.username, "password": PASSWORD})

    event = AuthEvent.objects.get(kind="login")
    assert (event.username, event.ip_address) == (user.username, "10.1.2.3")


def test_a_failed_sign_in_is_recorded_under_the_name_typed_without_the_password() -> None:
    Client(REMOTE_ADDR="10.1.2.3").post(LOGIN, {"username": "nobody", "password": "guess-1"})

    event = AuthEvent.objects.get(kind="login_failed")
    assert (event.username, event.ip_address) == ("nobody", "10.1.2.3")
    assert "guess-1" not in event.details


def test_adding_a_user_to_a_group_in_the_admin_is_recorded_with_who_did_it() -> None:
    user = user_in(None)
    admin = user_in(None, superuser=True)
    support = role("Support")

    client_for(admin).post(
        f"/admin/auth/user/{user.pk}/change/",
        {
            "username": user.username,
            "is_active": "on",
            "is_staff": "on",
            "groups": [support.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    event = AuthEvent.objects.get(kind="groups_changed", username=user.username)
    assert event.actor == admin.username
    assert event.details == "added Support"


def test_a_group_gaining_a_permission_is_recorded() -> None:
    group = Group.objects.create(name="Temporary")

    group.permissions.add(Permission.objects.get(codename="void_wallettransfer"))

    event = AuthEvent.objects.get(kind="permissions_changed")
    assert event.details == "group Temporary: added registry.void_wallettransfer"


def test_making_a_user_superuser_is_recorded() -> None:
    user = user_in(None)

    user.is_superuser = True
    user.save()

    event = AuthEvent.objects.get(kind="permissions_changed", username=user.username)
    assert event.details == "is_superuser False -> True"


def test_an_auditor_lists_the_sign_in_events() -> None:
    user = user_in("Support")
    Client().post(LOGIN, {"username": user.username, "password": "wrong"})

    page = client_for(user_in("Auditor")).get("/admin/staff/authevent/")

    assert page.status_code == 200
    assert "Sign-in failed" in page.content.decode()


def test_an_auditor_can_neither_change_users_nor_delete_events() -> None:
    auditor = client_for(user_in("Auditor"))
    user = user_in("Support")
    Client().post(LOGIN, {"username": user.username, "password": "wrong"})
    event = AuthEvent.objects.get(kind="login_failed")

    change = auditor.post(
        f"/admin/auth/user/{user.pk}/change/", {"username": "renamed", "is_superuser": "on"}
    )
    delete = auditor.post(f"/admin/staff/authevent/{event.pk}/delete/", {"post": "yes"})

    assert change.status_code == 403
    assert delete.status_code == 403
    assert AuthEvent.objects.filter(pk=event.pk).exists()
