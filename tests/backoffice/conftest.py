"""Back-office fixtures: users in each role, and the migration's stores."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client

from tests.migration.conftest import (  # noqa: F401 - fixtures
    _tasks_in_process,
    criteria_not_awaited,
    stores,
)
from tests.roles import role as group_for
from tests.second_factor import signed_in_with_second_factor

PASSWORD = "correct horse battery staple"


def user_in(role: str | None, superuser: bool = False) -> User:
    name = f"{(role or 'admin').lower()}-{uuid.uuid4().hex[:6]}"
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(name, f"{name}@example.com", PASSWORD)
    user = model.objects.create_user(name, f"{name}@example.com", PASSWORD, is_staff=True)
    if role:
        user.groups.add(group_for(role))
    return user


def client_for(user: User) -> Client:
    """Signed in, with the second factor when the user's role needs it."""
    return signed_in_with_second_factor(Client(), user)


@pytest.fixture
def support_user(db: None) -> User:
    return user_in("Support")


@pytest.fixture
def product_user(db: None) -> User:
    return user_in("Product")


@pytest.fixture
def support(support_user: User) -> Client:
    return client_for(support_user)


@pytest.fixture
def product(product_user: User) -> Client:
    return client_for(product_user)
