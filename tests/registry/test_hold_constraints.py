"""The hold registry's invariants are the database's: `.update()`s that break one are refused
(SQLite and PostgreSQL alike), as for the other registries (test_registry_constraints.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from domain.ids import u128_to_hex
from registry.models import WalletHold
from tests.registry.test_registry_constraints import wallet

pytestmark = pytest.mark.django_db


def open_hold() -> WalletHold:
    now = timezone.now()
    return WalletHold.objects.create(
        hold_id="constraint-hold",
        wallet=wallet(),
        amount_minor=300,
        timeout_s=60,
        tb_transfer_id_hex=u128_to_hex(0xC1),
        tb_timestamp=1,
        expires_at=now + timedelta(seconds=60),
    )


def refused_update(row: WalletHold, **fields: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        WalletHold.objects.filter(pk=row.pk).update(**fields)


def test_a_hold_amount_is_positive() -> None:
    refused_update(open_hold(), amount_minor=0)


def test_a_capture_takes_at_most_the_hold() -> None:
    refused_update(
        open_hold(),
        state="captured",
        captured_minor=301,
        resolved_at=timezone.now(),
        resolution_tb_transfer_id_hex=u128_to_hex(0xC2),
    )


def test_a_captured_hold_captured_something_and_an_open_one_nothing() -> None:
    hold = open_hold()

    refused_update(hold, captured_minor=10)
    refused_update(
        hold,
        state="captured",
        captured_minor=0,
        resolved_at=timezone.now(),
        resolution_tb_transfer_id_hex=u128_to_hex(0xC2),
    )


def test_a_resolved_hold_names_its_resolving_transfer_and_an_open_one_none() -> None:
    hold = open_hold()

    refused_update(hold, state="released", resolved_at=timezone.now())
    refused_update(hold, resolution_tb_transfer_id_hex=u128_to_hex(0xC2))


def test_a_failed_hold_carries_its_code_and_only_it() -> None:
    hold = open_hold()

    refused_update(hold, state="failed")
    refused_update(hold, failure_code="insufficient_funds")


def test_a_hold_state_is_known_and_its_timeout_positive() -> None:
    hold = open_hold()

    refused_update(hold, state="pending")
    refused_update(hold, timeout_s=0)


def test_only_a_captured_hold_waits_to_be_copied_back() -> None:
    refused_update(open_hold(), needs_copy_back=True)
