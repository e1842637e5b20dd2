"""Races between requests while TigerBeetle is the only store (phase 4), on real commits."""

from __future__ import annotations

from flags.phases import Phase
from tests.migration.conftest import Stores, enter_phase, new_key, tx
from tests.stores.test_wallet_behaviour import (
    assert_exactly_one_posted,
    assert_ledger_holds_only_registered_transfers,
    race_credit_and_debit,
)


def test_a_credit_and_a_debit_racing_on_one_id_post_exactly_one_in_phase_4(
    committed_stores: Stores,
) -> None:
    enter_phase(Phase.TIGERBEETLE_ONLY)
    key = new_key()
    committed_stores.phased.add_credit(key, 100_000, tx())

    winners = [
        assert_exactly_one_posted(race_credit_and_debit(committed_stores.phased, key, tx()))
        for _ in range(20)
    ]

    credits, debits = winners.count("credit"), winners.count("debit")
    assert committed_stores.phased.get_balance(key).fields_minor() == (
        100_000 + 300 * credits - 200 * debits,
        200 * debits,
        100_000 + 300 * credits,
    )
    assert_ledger_holds_only_registered_transfers(committed_stores.tigerbeetle, key)
