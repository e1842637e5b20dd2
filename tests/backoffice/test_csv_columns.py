"""The CSV exports keep their columns, in their order: a spreadsheet or a script that reads
them by position is not broken by where the wallet key's columns come from."""

from __future__ import annotations

from types import SimpleNamespace

from backoffice.admin_base import wallet_key_csv_columns
from backoffice.migration_admin import ReconciliationMismatchAdmin
from backoffice.transfer_admin import TransferCsv

TRANSFER_HEADERS = [
    "transaction_id",
    "client_id",
    "country",
    "currency",
    "issuer",
    "kind",
    "amount",
    "state",
    "created_at",
    "made_by",
    "voided_by",
    "voided_at",
    "void_reason",
    "tigerbeetle_transfer_id",
]
MISMATCH_HEADERS = [
    "run_started_at",
    "kind",
    "client_id",
    "country",
    "currency",
    "issuer",
    "tigerbeetle_account_id",
    "mongo_available",
    "tigerbeetle_available",
    "mongo_spent",
    "tigerbeetle_spent",
    "mongo_total_received",
    "tigerbeetle_total_received",
    "pending_mirror_entries",
    "resolved_at",
    "resolved_by",
    "transaction_id",
    "tigerbeetle_transfer_id",
    "registered_amount",
    "tigerbeetle_amount",
    "detail",
]


def test_the_exports_keep_their_columns_in_order() -> None:
    assert [header for header, _ in TransferCsv.csv_columns] == TRANSFER_HEADERS
    assert [header for header, _ in ReconciliationMismatchAdmin.csv_columns] == MISMATCH_HEADERS


def test_the_key_columns_read_the_rows_fields_as_stored() -> None:
    wallet = SimpleNamespace(client_id="alice", country="USA", currency="USD", issuer="")
    transfer = SimpleNamespace(wallet=wallet)

    assert [value(transfer) for _, value in wallet_key_csv_columns("wallet.")] == [
        "alice",
        "USA",
        "USD",
        "",
    ]
    assert [value(wallet) for _, value in wallet_key_csv_columns()] == ["alice", "USA", "USD", ""]
