"""The registries' invariants are the database's: writes that bypass the model are refused.

Each test writes a valid row through the model, then breaks one invariant with `.update()`,
`bulk_create` or raw SQL, none of which runs Python validation, and expects an
IntegrityError from the database itself (SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from domain.ids import u128_to_hex
from registry.models import WalletAccount, WalletTransfer

pytestmark = pytest.mark.django_db


def wallet(**fields: Any) -> WalletAccount:
    values: dict[str, Any] = {
        "client_id": "constraint-client",
        "country": "USA",
        "currency": "USD",
        "tb_account_id_hex": u128_to_hex(0xA1),
        "ledger": 840,
    }
    return WalletAccount.objects.create(**{**values, **fields})


def posted(**fields: Any) -> WalletTransfer:
    values: dict[str, Any] = {
        "transaction_id": "constraint-tx",
        "wallet": wallet(),
        "kind": WalletTransfer.Kind.CREDIT,
        "amount_minor": 100,
        "tb_transfer_id_hex": u128_to_hex(0xB1),
        "tb_timestamp": 1,
    }
    return WalletTransfer.objects.create(**{**values, **fields})


def refused(write: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        write()


def update_transfer(row: WalletTransfer, **fields: Any) -> None:
    refused(lambda: WalletTransfer.objects.filter(pk=row.pk).update(**fields))


def update_wallet(row: WalletAccount, **fields: Any) -> None:
    refused(lambda: WalletAccount.objects.filter(pk=row.pk).update(**fields))


# --- transfer registry ----------------------------------------------------------------------


@pytest.mark.parametrize("amount_minor", [0, -1])
def test_a_transfer_amount_must_be_positive(amount_minor: int) -> None:
    update_transfer(posted(), amount_minor=amount_minor)


def test_a_transfer_kind_must_be_credit_or_debit() -> None:
    update_transfer(posted(), kind="void")


def test_a_transfer_state_must_be_known() -> None:
    update_transfer(posted(), state="held")


def test_a_transfer_needs_a_transaction_id() -> None:
    update_transfer(posted(), transaction_id="")


# Not an id: too short, upper case, outside 0-9a-f (a full-width f among them), or zero.
FULL_WIDTH_F = "\uff46"
BAD_HEX_IDS = [
    "",
    "abc",
    "f" * 31,
    "0" * 32,
    "G" + "0" * 31,
    "A" + "0" * 31,
    "Z" * 32,
    FULL_WIDTH_F * 32,
    "f" * 31 + FULL_WIDTH_F,
    " " + "f" * 31,
]


@pytest.mark.parametrize("hex_id", BAD_HEX_IDS, ids=repr)
def test_a_transfer_id_is_32_lowercase_hex_digits_and_not_zero(hex_id: str) -> None:
    update_transfer(posted(), tb_transfer_id_hex=hex_id)


def test_a_void_transfer_id_is_empty_or_a_transfer_id() -> None:
    row = posted()
    WalletTransfer.objects.filter(pk=row.pk).update(
        state="voided", voided_at=timezone.now(), voided_by="support", void_reason="dup"
    )
    update_transfer(row, void_tb_transfer_id_hex="xyz")


def test_a_tb_timestamp_is_positive_when_known() -> None:
    update_transfer(posted(), tb_timestamp=0)


def test_voided_without_voided_at_is_refused() -> None:
    update_transfer(posted(), state="voided", voided_by="support")


def test_voided_at_on_a_posted_transfer_is_refused() -> None:
    update_transfer(posted(), voided_at=timezone.now())


def test_a_void_needs_who_voided_it() -> None:
    update_transfer(posted(), state="voided", voided_at=timezone.now(), voided_by="")


def test_void_details_on_a_transfer_that_is_not_voided_are_refused() -> None:
    row = posted()
    update_transfer(row, voided_by="support")
    update_transfer(row, void_reason="dup")
    update_transfer(row, void_tb_transfer_id_hex=u128_to_hex(0xC1))
    update_transfer(row, void_needs_copy_back=True)


def test_a_failed_transfer_carries_its_failure_code_and_only_it_does() -> None:
    row = posted()
    update_transfer(row, state="failed")
    update_transfer(row, failure_code="insufficient_funds")


def test_a_failed_transfer_is_never_copied_back() -> None:
    row = posted(kind=WalletTransfer.Kind.DEBIT, state="failed", failure_code="insufficient_funds")
    update_transfer(row, needs_copy_back=True)


def test_a_bulk_insert_of_a_bad_transfer_is_refused() -> None:
    account = wallet()
    refused(
        lambda: WalletTransfer.objects.bulk_create(
            [
                WalletTransfer(
                    transaction_id="bulk-tx",
                    wallet=account,
                    kind="credit",
                    amount_minor=-5,
                    tb_transfer_id_hex=u128_to_hex(0xB2),
                )
            ]
        )
    )


def test_raw_sql_cannot_insert_a_transfer_with_no_amount() -> None:
    account = wallet()
    table = WalletTransfer._meta.db_table

    def insert() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (transaction_id, wallet_id, kind, amount_minor, state,"
                " failure_code, tb_transfer_id_hex, void_tb_transfer_id_hex, void_attempts,"
                " voided_by, void_reason, made_by, needs_copy_back, void_needs_copy_back,"
                " created_at) VALUES (%s, %s, 'credit', 0, 'posted', '', %s, '', 0, '', '',"
                " '', %s, %s, %s)",
                ["raw-tx", account.pk, u128_to_hex(0xB3), False, False, timezone.now()],
            )

    refused(insert)


def test_every_state_the_code_writes_is_accepted() -> None:
    """The constraints refuse nothing the writers write: posted (to copy back), refused,
    voided with its void transfer, and voided before a backfill snapshot (no void transfer)."""
    account = wallet()
    common: dict[str, Any] = {"wallet": account, "kind": "credit", "amount_minor": 1}
    now = timezone.now()
    WalletTransfer.objects.bulk_create(
        [
            WalletTransfer(
                transaction_id="a",
                tb_transfer_id_hex=u128_to_hex(1),
                needs_copy_back=True,
                **common,
            ),
            WalletTransfer(
                transaction_id="b",
                tb_transfer_id_hex=u128_to_hex(2),
                state="failed",
                failure_code="insufficient_funds",
                **common,
            ),
            WalletTransfer(
                transaction_id="c",
                tb_transfer_id_hex=u128_to_hex(3),
                state="voided",
                void_tb_transfer_id_hex=u128_to_hex(4),
                voided_by="support",
                void_reason="dup",
                voided_at=now,
                void_needs_copy_back=True,
                **common,
            ),
            WalletTransfer(
                transaction_id="d",
                tb_transfer_id_hex=u128_to_hex(5),
                state="voided",
                voided_by="support",
                voided_at=now,
                **common,
            ),
        ]
    )
    assert WalletTransfer.objects.count() == 4


# --- account registry -----------------------------------------------------------------------


@pytest.mark.parametrize("ledger", [0, 1000])
def test_a_wallet_ledger_is_an_iso_numeric_code(ledger: int) -> None:
    update_wallet(wallet(), ledger=ledger)


@pytest.mark.parametrize("hex_id", BAD_HEX_IDS, ids=repr)
def test_a_wallet_account_id_is_32_lowercase_hex_digits_and_not_zero(hex_id: str) -> None:
    update_wallet(wallet(), tb_account_id_hex=hex_id)


# A final newline among them, which Python's `$` (Django's REGEXP on SQLite) lets through.
@pytest.mark.parametrize("hex_id", ["f" * 33, "f" * 32 + "\n"], ids=repr)
def test_an_id_longer_than_32_characters_is_refused(hex_id: str) -> None:
    """By the check on SQLite; by the column's length on PostgreSQL (a DataError)."""
    row = wallet()
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        WalletAccount.objects.filter(pk=row.pk).update(tb_account_id_hex=hex_id)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL text cannot hold a NUL")
@pytest.mark.parametrize(
    "hex_id", ["f" * 31 + "\x00", "f" * 32 + "\x00", "f" * 16 + "\x00" + "f" * 15], ids=repr
)
def test_on_sqlite_an_id_with_a_nul_inside_is_refused(hex_id: str) -> None:
    update_wallet(wallet(), tb_account_id_hex=hex_id)


@pytest.mark.parametrize("account_id", [1, 0xA1, 2**128 - 2])
def test_a_wallet_account_id_as_u128_to_hex_writes_it_is_accepted(account_id: int) -> None:
    row = wallet()
    WalletAccount.objects.filter(pk=row.pk).update(tb_account_id_hex=u128_to_hex(account_id))
    row.refresh_from_db()
    assert row.tb_account_id == account_id


@pytest.mark.parametrize("field", ["client_id", "country", "currency"])
def test_a_wallet_key_field_is_never_empty(field: str) -> None:
    update_wallet(wallet(), **{field: ""})


def test_a_wallet_opening_seq_is_never_negative() -> None:
    update_wallet(wallet(), opening_seq=-1)


def test_an_imported_wallet_has_its_opening_seq() -> None:
    update_wallet(wallet(), imported_at=timezone.now())
