"""registry 0009 renames "backport" to "copy back": every row keeps every value, and the
renamed index and CHECK constraints still hold (SQLite and PostgreSQL alike).

The rows are written through the models as migration 0008 left them, then the schema is
migrated forward and read through the models of 0009; the test leaves the schema at the
latest migration whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from domain.ids import u128_to_hex

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("registry", "0008_transfer_void_id_index")
AFTER = ("registry", "0009_copy_back_names")
RENAMED = {"needs_backport": "needs_copy_back", "void_needs_backport": "void_needs_copy_back"}
VOIDED_AT = datetime(2026, 11, 30, 12, 0, 0, 123000, tzinfo=UTC)


def migrate_to(target: tuple[str, str]) -> Apps:
    """The schema migrated to `target`; the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def before_0009() -> Iterator[Apps]:
    apps = migrate_to(BEFORE)
    try:
        yield apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def write_rows(apps: Apps) -> None:
    """One row in each state the copy-back columns can take, under their old names."""
    account = apps.get_model("registry", "WalletAccount").objects.create(
        client_id="copy-back-client",
        country="USA",
        currency="USD",
        tb_account_id_hex=u128_to_hex(0xA1),
        ledger=840,
    )
    transfers = apps.get_model("registry", "WalletTransfer").objects
    common: dict[str, Any] = {"wallet": account, "kind": "credit", "amount_minor": 100}
    transfers.create(
        transaction_id="written-in-phase-4",
        tb_transfer_id_hex=u128_to_hex(0xB1),
        tb_timestamp=1_700_000_000_000_000_001,
        needs_backport=True,
        **common,
    )
    transfers.create(
        transaction_id="voided-in-phase-4",
        tb_transfer_id_hex=u128_to_hex(0xB2),
        tb_timestamp=1_700_000_000_000_000_002,
        state="voided",
        void_tb_transfer_id_hex=u128_to_hex(0xC2),
        voided_by="support",
        void_reason="duplicate",
        voided_at=VOIDED_AT,
        void_needs_backport=True,
        **common,
    )
    transfers.create(
        transaction_id="refused",
        tb_transfer_id_hex=u128_to_hex(0xB3),
        state="failed",
        failure_code="insufficient_funds",
        **common,
    )
    transfers.create(
        transaction_id="already-in-mongodb", tb_transfer_id_hex=u128_to_hex(0xB4), **common
    )


def rows(apps: Apps) -> list[dict[str, Any]]:
    return list(apps.get_model("registry", "WalletTransfer").objects.order_by("pk").values())


def test_the_rename_keeps_every_row_and_value(before_0009: Apps) -> None:
    write_rows(before_0009)
    written = rows(before_0009)

    after = migrate_to(AFTER)

    expected = [{RENAMED.get(name, name): value for name, value in row.items()} for row in written]
    assert rows(after) == expected
    due = after.get_model("registry", "WalletTransfer").objects.filter(needs_copy_back=True)
    assert list(due.values_list("transaction_id", flat=True)) == ["written-in-phase-4"]


def test_the_renamed_index_and_checks_are_in_place_and_still_refuse(before_0009: Apps) -> None:
    write_rows(before_0009)

    after = migrate_to(AFTER)

    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "registry_wallettransfer")
    assert {"transfer_copy_back_due", "transfer_failed_never_copied_back"} <= set(found)
    assert not {"transfer_backport_due", "transfer_failed_never_backported"} & set(found)
    assert found["transfer_voided_when_voided_at"]["check"]
    transfers = after.get_model("registry", "WalletTransfer").objects
    with pytest.raises(IntegrityError), transaction.atomic():
        transfers.filter(transaction_id="refused").update(needs_copy_back=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        transfers.filter(transaction_id="already-in-mongodb").update(void_needs_copy_back=True)
