"""Only a phase change moves where money is written: waffle's admin refuses every edit of a
migration flag (rename, flip, share, delete, a new flag with a migration name), even from a
superuser, and so does any other write outside the phase change."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from waffle.models import Sample, Switch

from flags.audit import apply_state
from flags.models import FlagChange
from flags.phases import (
    DUAL_WRITE,
    READ_ROLLOUT,
    TIGERBEETLE_ONLY,
    InvalidPhaseChange,
    Phase,
    current_state,
    state_for_phase,
)

pytestmark = pytest.mark.django_db


def in_phase(phase: Phase) -> None:
    apply_state(state_for_phase(phase, rollout_percent=Decimal(10)), actor="setup")


def rename(admin_client: Client, switch: Switch, new_name: str) -> int:
    response = admin_client.post(
        f"/admin/waffle/switch/{switch.pk}/change/",
        {"name": new_name, "active": "on" if switch.active else "", "note": ""},
    )
    return response.status_code


def test_a_superuser_cannot_rename_tigerbeetle_only(admin_client: Client) -> None:
    in_phase(Phase.TIGERBEETLE_ONLY)
    audited = FlagChange.objects.count()
    switch = Switch.objects.get(name=TIGERBEETLE_ONLY)

    assert rename(admin_client, switch, "wallet_tigerbeetle_only_old") == 403

    assert Switch.objects.get(pk=switch.pk).name == TIGERBEETLE_ONLY
    assert current_state().phase == Phase.TIGERBEETLE_ONLY
    assert FlagChange.objects.count() == audited


def test_a_superuser_cannot_rename_dual_write(admin_client: Client) -> None:
    in_phase(Phase.DUAL_WRITE)
    switch = Switch.objects.get(name=DUAL_WRITE)

    assert rename(admin_client, switch, "wallet_dual_write_off") == 403

    assert current_state().phase == Phase.DUAL_WRITE


def test_a_superuser_cannot_change_the_read_rollout_share(admin_client: Client) -> None:
    in_phase(Phase.READ_CUTOVER)
    sample = Sample.objects.get(name=READ_ROLLOUT)

    response = admin_client.post(
        f"/admin/waffle/sample/{sample.pk}/change/",
        {"name": READ_ROLLOUT, "percent": "50.0", "note": ""},
    )

    assert response.status_code == 403
    assert current_state().read_rollout_percent == Decimal(10)


def test_a_migration_flag_is_shown_read_only_pointing_to_the_phase_page(
    admin_client: Client,
) -> None:
    in_phase(Phase.DUAL_WRITE)
    switch = Switch.objects.get(name=DUAL_WRITE)

    page = admin_client.get(f"/admin/waffle/switch/{switch.pk}/change/").content.decode()

    assert "migration phase page" in page and "/admin/migration/phase/" in page
    assert 'name="_save"' not in page


def test_giving_another_switch_a_migration_flags_name_is_refused(admin_client: Client) -> None:
    other = Switch.objects.create(name="some_feature", active=True)

    response = admin_client.post(
        f"/admin/waffle/switch/{other.pk}/change/",
        {"name": TIGERBEETLE_ONLY, "active": "on", "note": ""},
    )

    assert response.status_code == 200
    assert "is a migration flag" in response.content.decode()
    assert Switch.objects.get(pk=other.pk).name == "some_feature"
    assert current_state().phase == Phase.LEGACY


def test_adding_a_switch_with_a_migration_flags_name_is_refused(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/waffle/switch/add/", {"name": DUAL_WRITE, "active": "on", "note": ""}
    )

    assert response.status_code == 200
    assert "is a migration flag" in response.content.decode()
    assert current_state().phase == Phase.LEGACY


def test_the_enable_action_on_a_migration_switch_is_refused(admin_client: Client) -> None:
    in_phase(Phase.LEGACY)
    switch = Switch.objects.get(name=DUAL_WRITE)

    response = admin_client.post(
        "/admin/waffle/switch/",
        {"action": "enable_switches", "_selected_action": [switch.pk]},
        follow=True,
    )

    assert "refused" in response.content.decode()
    assert current_state().phase == Phase.LEGACY


def test_a_rename_outside_a_phase_change_is_refused_in_the_shell_too() -> None:
    in_phase(Phase.TIGERBEETLE_ONLY)
    switch = Switch.objects.get(name=TIGERBEETLE_ONLY)
    switch.name = "something_else"

    with pytest.raises(InvalidPhaseChange, match="only through a phase change"):
        switch.save()

    assert current_state().phase == Phase.TIGERBEETLE_ONLY


def test_deleting_a_migration_flag_outside_a_phase_change_is_refused() -> None:
    in_phase(Phase.DUAL_WRITE)

    refused = pytest.raises(InvalidPhaseChange, match="only through a phase change")
    # (a savepoint of the test's own: Django deletes inside a transaction without one)
    with refused, transaction.atomic():
        Switch.objects.filter(name=DUAL_WRITE).delete()

    assert current_state().phase == Phase.DUAL_WRITE
