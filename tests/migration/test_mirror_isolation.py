"""One wallet that cannot be mirrored is parked with its reason and never stops the others."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from bson.decimal128 import Decimal128
from django.core.management import call_command

from domain.ids import WalletKey
from flags.phases import Phase
from migration.outbox import MirrorState
from migration.tasks import sweep_outbox
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from tests.migration.test_mirror import assert_same_balance, entry_states


def write_raw_credit(stores: Stores, key: WalletKey, *, amount: str, transaction_id: str) -> None:
    """A credit written straight into MongoDB, as any client of the legacy collections (or
    an older version of the API) could leave it: a wallet born with the log, one entry."""
    now = datetime.now(UTC)
    fields = {
        "client_id": key.client_id,
        "country": key.country,
        "currency": key.currency,
        "issuer_type_identifier": key.issuer or "",
    }
    stores.mongo.database.wallets().insert_one(
        {
            **fields,
            "credit": Decimal128(amount),
            "debit": Decimal128("0.00"),
            "historical_credit": Decimal128(amount),
            "wallet_seq": 1,
            "log_complete": True,
            "created_at": now,
        }
    )
    stores.mongo.database.log().insert_one(
        {
            "_id": transaction_id,
            "kind": "credit",
            **fields,
            "amount": Decimal128(amount),
            "amount_minor": int(Decimal128(amount).to_decimal() * 100),
            "state": "posted",
            "failure_code": "",
            "balance_after": {},
            "wallet_seq": 1,
            "mirror_state": MirrorState.PENDING,
            "created_at": now,
        }
    )


def good_and_bad_wallets(stores: Stores, bad_client_id: str) -> tuple[list[WalletKey], WalletKey]:
    """Pending entries of several good wallets and one bad one, which sorts first and so
    leads the mirror's batch."""
    good = [new_key() for _ in range(5)]
    for key in good:
        stores.mongo.add_credit(key, 1_000, tx())
        stores.mongo.subtract_credit(key, 250, tx())
    bad = WalletKey(client_id=bad_client_id, country="USA", currency="USD")
    write_raw_credit(stores, bad, amount="10.00", transaction_id=tx())
    enter_phase(Phase.DUAL_WRITE)
    return good, bad


def assert_others_mirrored_and_bad_parked(
    stores: Stores, good: list[WalletKey], bad: WalletKey
) -> None:
    for key in good:
        assert entry_states(stores, key) == [MirrorState.MIRRORED] * 2
        assert_same_balance(stores, key)
    parked = stores.mongo.database.log().find_one({"client_id": bad.client_id})
    assert parked["mirror_state"] == MirrorState.PARKED
    assert "cannot be mirrored" in parked["mirror_error"]


def test_a_client_id_with_a_nul_byte_is_parked_and_the_drain_mirrors_every_other_wallet(
    committed_stores: Stores,
) -> None:
    good, bad = good_and_bad_wallets(committed_stores, "client-\x00nul")
    out = io.StringIO()

    call_command("mirror", "--drain", stdout=out)

    assert_others_mirrored_and_bad_parked(committed_stores, good, bad)
    assert "parked 1" in out.getvalue()


def test_a_wallet_in_an_unknown_currency_is_parked_and_the_sweeper_mirrors_the_rest(
    committed_stores: Stores,
) -> None:
    good, bad = good_and_bad_wallets(committed_stores, "client-0-unknown-currency")
    committed_stores.mongo.database.log().update_one(
        {"client_id": bad.client_id}, {"$set": {"currency": "ZZZ"}}
    )
    committed_stores.mongo.database.wallets().update_one(
        {"client_id": bad.client_id}, {"$set": {"currency": "ZZZ"}}
    )
    bad = WalletKey(client_id=bad.client_id, country="USA", currency="ZZZ")

    result = sweep_outbox()

    assert_others_mirrored_and_bad_parked(committed_stores, good, bad)
    assert result["depth"]["pending"] == 0


def test_a_malformed_log_entry_is_parked_and_the_drain_mirrors_every_other_wallet(
    committed_stores: Stores,
) -> None:
    good, bad = good_and_bad_wallets(committed_stores, "client-0-malformed")
    committed_stores.mongo.database.log().update_one(
        {"client_id": bad.client_id}, {"$unset": {"amount_minor": ""}}
    )

    report = committed_stores.mirror().drain()

    assert report.parked == 1
    assert_others_mirrored_and_bad_parked(committed_stores, good, bad)
