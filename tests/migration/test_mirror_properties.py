"""Properties of dual write: whatever the order of writes, mirror runs, lost acknowledgements
and concurrent requests, TigerBeetle ends with exactly MongoDB's balances."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import errors
from flags.phases import Phase
from migration.outbox import MirrorState
from tests.concurrency import run_concurrently
from tests.migration.conftest import (
    Stores,
    assert_stores_agree,
    enter_phase,
    new_key,
    phased_over,
    tx,
)

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["credit", "debit", "void", "mirror", "lose_marks"]),
        st.integers(min_value=0, max_value=2),  # which wallet
        st.integers(min_value=1, max_value=5_000),  # amount in minor units
        st.integers(min_value=1, max_value=6),  # mirror batch limit
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_any_interleaving_of_writes_and_mirror_runs_converges(
    stores: Stores, operations: list[tuple[str, int, int, int]]
) -> None:
    keys = [new_key() for _ in range(3)]
    lagging = phased_over(stores, enqueue_mirror=lambda k: None)
    enter_phase(Phase.DUAL_WRITE)
    posted: list[str] = []
    for kind, wallet, amount, limit in operations:
        key = keys[wallet]
        try:
            if kind == "credit":
                posted.append(lagging.add_credit(key, amount, tx()).transaction.transaction_id)
            elif kind == "debit":
                posted.append(lagging.subtract_credit(key, amount, tx()).transaction.transaction_id)
            elif kind == "void" and posted:
                lagging.void_transaction(
                    posted.pop(amount % len(posted)), voided_by="prop", reason="test"
                )
            elif kind == "mirror":
                stores.mirror().run_once(limit=limit)
            elif kind == "lose_marks":
                # TigerBeetle applied a batch but MongoDB never heard: entries look pending.
                stores.mongo.database.log().update_many(
                    {"mirror_state": MirrorState.MIRRORED},
                    {"$set": {"mirror_state": MirrorState.PENDING}},
                )
        except (errors.InsufficientFunds, errors.WalletNotFound, errors.VoidWouldOverdraw):
            pass
    stores.mirror().drain()
    existing = [key for key in keys if stores.scan.snapshots([key])]
    assert_stores_agree(stores, existing)
    waiting = stores.outbox.depth()
    assert (waiting.pending, waiting.parked) == (0, 0)


def test_concurrent_api_writes_in_dual_write_reach_tigerbeetle_exactly_once(
    committed_stores: Stores,
) -> None:
    enter_phase(Phase.DUAL_WRITE)
    key = new_key()
    committed_stores.phased.add_credit(key, 100_000, tx())
    amounts = [random.randint(1, 900) for _ in range(60)]

    def write(amount: int) -> Any:
        if amount % 3 == 0:
            return committed_stores.phased.add_credit(key, amount, tx())
        return committed_stores.phased.subtract_credit(key, amount, tx())

    run_concurrently(write, amounts, workers=6)
    committed_stores.mirror().drain()

    expected = 100_000 + sum(a if a % 3 == 0 else -a for a in amounts)
    assert committed_stores.mongo.get_balance(key).credit_minor == expected
    assert_stores_agree(committed_stores, [key])
