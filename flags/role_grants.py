"""Giving the back-office roles (auth groups) their permissions, for the data migrations that
define the roles and for tests/roles.py, which re-creates them after a test's flush.

It works on whatever app registry it is given (a migration's historical one, or the live one)
and imports no model, so a migration that uses it replays the same way later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.management import create_permissions

# A role's permissions: group name -> (app label, permission codename) pairs.
Grants = Mapping[str, Sequence[tuple[str, str]]]


def create_permissions_now(apps: Any) -> None:
    """Permissions are normally created after all migrations; a role needs them now.
    tests/roles.py calls this with the live app registry: restore what was there, or later
    post_migrate signals (after a test flush) would skip every app's permissions."""
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module


def grant(apps: Any, grants: Grants) -> None:
    """Each group (created if missing) gets its permissions; each must exist."""
    create_permissions_now(apps)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, wanted in grants.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )


def revoke(apps: Any, grants: Grants) -> None:
    """The reverse of `grant`: the groups keep existing, without those permissions."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, wanted in grants.items():
        group = group_model.objects.filter(name=name).first()
        if group is None:
            continue
        for app_label, codename in wanted:
            group.permissions.remove(
                *permission_model.objects.filter(
                    content_type__app_label=app_label, codename=codename
                )
            )
