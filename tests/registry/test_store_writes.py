"""The write path's registry row (`record_store_write`): inserted from a statement written
once, it must be the row the ORM would have written, and a second insert of one transaction
id must answer the row already there."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db.models.signals import post_save, pre_save
from django.forms.models import model_to_dict

from domain.ids import WalletKey, u128_to_hex
from registry import accounts as account_registry
from registry import transfers as transfer_registry
from registry.models import WalletTransfer

pytestmark = pytest.mark.django_db

WRITTEN_AT = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=UTC)


def wallet_pk(client_id: str) -> int:
    key = WalletKey(client_id, "USA", "USD")
    registered = account_registry.register_account(key, tb_account_id=0xBEEF, ledger=840, nonce=0)
    return registered.registry_pk


def test_a_store_write_reads_back_as_every_field_it_was_given() -> None:
    pk = wallet_pk("writer")

    row = transfer_registry.record_store_write(
        transaction_id="tx-written",
        wallet_pk=pk,
        kind=WalletTransfer.Kind.CREDIT,
        amount_minor=12_345,
        tb_transfer_id=0xC0FFEE,
        tb_timestamp=1_700_000_000_123_456_789,
        created_at=WRITTEN_AT,
        made_by="gateway",
    )

    stored = WalletTransfer.objects.get(transaction_id="tx-written")
    assert row.pk == stored.pk
    assert model_to_dict(row) == model_to_dict(stored)
    assert (stored.wallet_id, stored.kind, stored.amount_minor) == (pk, "credit", 12_345)
    assert (stored.state, stored.failure_code, stored.made_by) == ("posted", "", "gateway")
    assert stored.tb_transfer_id_hex == u128_to_hex(0xC0FFEE)
    assert stored.tb_timestamp == 1_700_000_000_123_456_789
    assert stored.created_at == WRITTEN_AT
    assert stored.needs_copy_back is True
    assert (stored.voided_at, stored.void_attempts, stored.void_needs_copy_back) == (None, 0, False)


def test_a_refused_store_write_is_stored_failed_and_not_due_for_copy_back() -> None:
    row = transfer_registry.record_store_write(
        transaction_id="tx-refused",
        wallet_pk=wallet_pk("refused"),
        kind=WalletTransfer.Kind.DEBIT,
        amount_minor=500,
        tb_transfer_id=0xD00D,
        tb_timestamp=None,
        created_at=WRITTEN_AT,
        failure_code="insufficient_funds",
    )

    stored = WalletTransfer.objects.get(pk=row.pk)
    assert (stored.state, stored.failure_code) == ("failed", "insufficient_funds")
    assert (stored.tb_timestamp, stored.needs_copy_back) == (None, False)


def test_a_second_store_write_of_one_transaction_id_answers_the_first_row() -> None:
    pk = wallet_pk("twice")
    write: dict[str, Any] = dict(
        transaction_id="tx-twice",
        wallet_pk=pk,
        kind=WalletTransfer.Kind.CREDIT,
        amount_minor=100,
        tb_transfer_id=0xAB,
        tb_timestamp=42,
        created_at=WRITTEN_AT,
    )
    first = transfer_registry.record_store_write(**write)

    second = transfer_registry.record_store_write(**write)

    assert second.pk == first.pk
    assert WalletTransfer.objects.filter(transaction_id="tx-twice").count() == 1


def test_nothing_listens_to_saves_of_transfer_rows_the_write_path_inserts_without_save() -> None:
    assert not pre_save.has_listeners(WalletTransfer)
    assert not post_save.has_listeners(WalletTransfer)
