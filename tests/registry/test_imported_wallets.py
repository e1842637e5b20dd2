"""The backfill's registry writes: a page of imported wallets in one statement, each row as
the model would have written it, rows registered before their import completed, rows
already imported left alone; and the page lookup by client id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.ids import WalletKey, u128_to_hex
from registry import accounts as account_registry
from registry.accounts import ImportedWallet
from registry.models import WalletAccount

pytestmark = pytest.mark.django_db

IMPORTED_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def imported(key: WalletKey, *, account_id: int, opening_seq: int) -> ImportedWallet:
    return ImportedWallet(key=key, tb_account_id=account_id, ledger=840, opening_seq=opening_seq)


def test_a_page_of_new_wallets_gets_one_complete_row_each() -> None:
    keys = [WalletKey(f"import-{n}", "USA", "USD", "issuer-a" if n % 2 else None) for n in range(5)]
    before = datetime.now(UTC)

    account_registry.record_imported(
        [imported(key, account_id=0xA0 + n, opening_seq=n) for n, key in enumerate(keys)],
        imported_at=IMPORTED_AT,
        batch_size=2,  # three statements: 2 + 2 + 1 rows
    )

    rows = account_registry.rows_by_key(keys)
    assert set(rows) == set(keys)
    for n, key in enumerate(keys):
        row = rows[key]
        assert (row.tb_account_id_hex, row.ledger, row.nonce) == (u128_to_hex(0xA0 + n), 840, 0)
        assert (row.opening_seq, row.imported_at) == (n, IMPORTED_AT)
        assert row.issuer == (key.issuer or "")
        assert row.created_at >= before


def test_a_page_keeps_every_key_and_opening_seq_exactly() -> None:
    """The page travels to the database as one JSON array: text and integers come back as
    they went in."""
    keys = [
        WalletKey('quo"te\\back', "USA", "USD"),
        WalletKey("José-名前-😀", "ESP", "EUR", "émetteur"),
        WalletKey("x" * 128, "USA", "USD", "i" * 128),
    ]
    seqs = [0, 2**63 - 1, 12345678901234]

    account_registry.record_imported(
        [imported(key, account_id=0xC0 + n, opening_seq=seqs[n]) for n, key in enumerate(keys)],
        imported_at=IMPORTED_AT,
        batch_size=10,
    )

    rows = account_registry.rows_by_key(keys)
    assert {key: rows[key].opening_seq for key in keys} == dict(zip(keys, seqs, strict=True))
    assert [rows[key].tb_account_id for key in keys] == [0xC0, 0xC1, 0xC2]


def test_a_row_registered_before_its_import_gets_its_opening_seq() -> None:
    key = WalletKey("import-registered-early", "USA", "USD")
    WalletAccount.objects.create(
        client_id=key.client_id,
        country=key.country,
        currency=key.currency,
        tb_account_id_hex=u128_to_hex(0xB1),
        ledger=840,
    )

    new_key = WalletKey("import-new-beside-it", "USA", "USD")

    account_registry.record_imported(
        [
            imported(key, account_id=0xB1, opening_seq=7),
            imported(new_key, account_id=0xB2, opening_seq=4),
        ],
        imported_at=IMPORTED_AT,
        batch_size=100,
    )

    row = WalletAccount.objects.get(client_id=key.client_id)
    assert (row.tb_account_id_hex, row.opening_seq, row.imported_at) == (
        u128_to_hex(0xB1),
        7,
        IMPORTED_AT,
    )
    assert WalletAccount.objects.filter(client_id=key.client_id).count() == 1
    assert WalletAccount.objects.get(client_id=new_key.client_id).opening_seq == 4


def test_a_row_already_imported_is_left_as_it_is() -> None:
    key = WalletKey("import-twice", "USA", "USD")
    first = datetime(2026, 1, 1, tzinfo=UTC)
    account_registry.record_imported(
        [imported(key, account_id=0xC1, opening_seq=3)], imported_at=first, batch_size=100
    )

    account_registry.record_imported(
        [imported(key, account_id=0xC1, opening_seq=9)], imported_at=IMPORTED_AT, batch_size=100
    )

    row = WalletAccount.objects.get(client_id=key.client_id)
    assert (row.opening_seq, row.imported_at) == (3, first)


def test_rows_by_key_answers_only_the_keys_asked_for() -> None:
    asked = WalletKey("lookup-client", "USA", "USD")
    same_client_other_wallet = WalletKey("lookup-client", "FRA", "EUR")
    account_registry.record_imported(
        [
            imported(asked, account_id=0xD1, opening_seq=1),
            imported(same_client_other_wallet, account_id=0xD2, opening_seq=1),
        ],
        imported_at=IMPORTED_AT,
        batch_size=100,
    )

    rows = account_registry.rows_by_key([asked, WalletKey("lookup-nobody", "USA", "USD")])

    assert list(rows) == [asked]
    assert rows[asked].tb_account_id_hex == u128_to_hex(0xD1)
    assert account_registry.rows_by_key([]) == {}
