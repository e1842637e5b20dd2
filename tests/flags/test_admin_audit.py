"""The flag audit trail is visible, and only visible, in the admin."""

from __future__ import annotations

import pytest
from django.test import Client

from flags.audit import apply_state
from flags.models import FlagChange
from flags.phases import Phase, state_for_phase

pytestmark = pytest.mark.django_db


def test_the_audit_trail_lists_each_flip_with_its_actor(admin_client: Client) -> None:
    apply_state(state_for_phase(Phase.DUAL_WRITE), actor="alice", note="go")
    response = admin_client.get("/admin/flags/flagchange/")
    assert response.status_code == 200
    assert b"wallet_dual_write" in response.content and b"alice" in response.content


def test_audit_rows_cannot_be_edited_or_deleted_even_by_a_superuser(admin_client: Client) -> None:
    apply_state(state_for_phase(Phase.DUAL_WRITE), actor="alice")
    change = FlagChange.objects.get()
    response = admin_client.post(f"/admin/flags/flagchange/{change.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert FlagChange.objects.filter(pk=change.pk).exists()
