"""The API's permission checks read a caller's permissions in one query, the same set as
Django's ModelBackend, and afresh for each request: a permission taken away holds at once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth import backends, get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api import views
from api.permissions import CREDIT_WALLETS, READ_WALLETS
from ledger.service import WalletService
from tests.conftest import api_client_for, build_store, grant
from wallet_site.auth_backends import ModelBackend

pytestmark = pytest.mark.django_db


def new_user(**fields: Any) -> Any:
    return get_user_model().objects.create_user(f"perm-{uuid.uuid4().hex[:8]}", **fields)


def permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def group_with(*names: str) -> Group:
    group = Group.objects.create(name=f"group-{uuid.uuid4().hex[:8]}")
    group.permissions.add(*(permission(name) for name in names))
    return group


def fresh(user: Any) -> Any:
    """The user as a new request loads it: no permissions read yet."""
    return get_user_model().objects.get(pk=user.pk)


def djangos(user: Any) -> set[str]:
    return backends.ModelBackend().get_all_permissions(fresh(user))


def ours(user: Any) -> set[str]:
    return ModelBackend().get_all_permissions(fresh(user))


def test_a_user_without_permissions_holds_none() -> None:
    user = new_user()
    assert ours(user) == djangos(user) == set()


def test_a_users_own_permissions_are_read() -> None:
    user = new_user()
    grant(user, READ_WALLETS, CREDIT_WALLETS)
    assert ours(user) == djangos(user) == {READ_WALLETS, CREDIT_WALLETS}


def test_permissions_through_groups_are_read() -> None:
    user = new_user()
    user.groups.add(group_with(READ_WALLETS), group_with(READ_WALLETS, CREDIT_WALLETS))
    assert ours(user) == djangos(user) == {READ_WALLETS, CREDIT_WALLETS}


def test_own_and_group_permissions_are_read_together() -> None:
    user = new_user()
    grant(user, "registry.debit_wallets")
    user.groups.add(group_with(READ_WALLETS))
    assert ours(user) == djangos(user) == {READ_WALLETS, "registry.debit_wallets"}


def test_another_users_permissions_are_not_read() -> None:
    user, other = new_user(), new_user()
    grant(other, CREDIT_WALLETS)
    other.groups.add(group_with(READ_WALLETS))
    assert ours(user) == set()


def test_an_inactive_user_holds_no_permission() -> None:
    user = new_user(is_active=False)
    grant(user, READ_WALLETS)
    assert ours(user) == djangos(user) == set()


def test_a_superuser_holds_every_permission() -> None:
    user = new_user(is_superuser=True)
    assert ours(user) == djangos(user)
    assert len(ours(user)) == Permission.objects.count()


def test_a_permission_check_reads_the_permissions_in_one_query() -> None:
    user = new_user()
    grant(user, READ_WALLETS)
    user.groups.add(group_with(CREDIT_WALLETS))
    user = fresh(user)
    with CaptureQueriesContext(connection) as queries:
        assert user.has_perms([READ_WALLETS, CREDIT_WALLETS])
        assert user.has_perm(READ_WALLETS)
    assert len(queries) == 1


def test_a_permission_taken_away_refuses_the_next_request(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = build_store("tigerbeetle", request)
    monkeypatch.setattr(views, "wallet_service", lambda: WalletService(store))
    user = new_user()
    grant(user, READ_WALLETS)
    client: Any = api_client_for(user)
    url = f"/api/clients/perm-{uuid.uuid4().hex[:8]}/wallets"
    assert client.get(url).status_code == 200

    user.user_permissions.remove(permission(READ_WALLETS))

    answer = client.get(url)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"
