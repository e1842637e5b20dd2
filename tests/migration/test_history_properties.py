"""Whatever the writes, voids, refusals and mirror runs (re-applied batches included), once the
mirror has caught up TigerBeetle answers a wallet's history exactly as MongoDB does: whole,
page by page at any page size, and within any bounds drawn from its own times."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import errors
from domain.history import HistoryPoint, HistoryQuery
from domain.ids import WalletKey
from domain.wallets import WalletStore
from flags.phases import Phase
from migration.outbox import MirrorState
from tests.migration.conftest import Stores, enter_phase, new_key, phased_over, tx

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["credit", "credit", "debit", "void", "mirror", "lose_marks"]),
        st.integers(min_value=0, max_value=1),  # which wallet
        st.integers(min_value=1, max_value=5_000),  # amount in minor units
    ),
    min_size=1,
    max_size=25,
)


def paged(store: WalletStore, query: HistoryQuery) -> list[HistoryPoint]:
    points: list[HistoryPoint] = []
    for _ in range(100):
        page = store.history(query)
        points += page.points
        if not page.has_more:
            return points
        query = HistoryQuery(
            key=query.key,
            limit=query.limit,
            from_time=query.from_time,
            to_time=query.to_time,
            after=page.points[-1].ref(),
        )
    raise AssertionError("never reached the end")


def assert_histories_agree(
    stores: Stores, key: WalletKey, *, limit: int, bounds: tuple[int, int]
) -> None:
    whole = paged(stores.mongo, HistoryQuery(key=key, limit=limit))
    assert paged(stores.tigerbeetle, HistoryQuery(key=key, limit=limit)) == whole
    newer, older = sorted(index % len(whole) for index in bounds)
    query = HistoryQuery(
        key=key,
        limit=limit,
        from_time=whole[older].created_at,
        to_time=whole[newer].created_at + timedelta(milliseconds=1),
    )
    bounded = paged(stores.mongo, query)
    assert paged(stores.tigerbeetle, query) == bounded
    assert whole[newer] in bounded and whole[older] in bounded


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=OPERATIONS,
    limit=st.integers(min_value=1, max_value=7),
    bounds=st.tuples(st.integers(min_value=0), st.integers(min_value=0)),
)
def test_any_history_reads_the_same_from_both_stores_once_mirrored(
    stores: Stores,
    operations: list[tuple[str, int, int]],
    limit: int,
    bounds: tuple[int, int],
) -> None:
    keys = [new_key() for _ in range(2)]
    lagging = phased_over(stores, enqueue_mirror=lambda k: None)
    enter_phase(Phase.DUAL_WRITE)
    posted: list[str] = []
    for kind, wallet, amount in operations:
        try:
            if kind == "credit":
                posted.append(
                    lagging.add_credit(keys[wallet], amount, tx()).transaction.transaction_id
                )
            elif kind == "debit":
                debit = lagging.subtract_credit(keys[wallet], amount, tx())  # refused: no point
                posted.append(debit.transaction.transaction_id)
            elif kind == "void" and posted:
                lagging.void_transaction(
                    posted.pop(amount % len(posted)), voided_by="p", reason="p"
                )
            elif kind == "mirror":
                stores.mirror().run_once(limit=amount % 5 + 1)
            elif kind == "lose_marks":  # TigerBeetle applied a batch; MongoDB never heard
                stores.mongo.database.log().update_many(
                    {"mirror_state": MirrorState.MIRRORED},
                    {"$set": {"mirror_state": MirrorState.PENDING}},
                )
        except (errors.InsufficientFunds, errors.WalletNotFound, errors.VoidWouldOverdraw):
            pass
    stores.mirror().drain()
    for key in keys:
        if stores.scan.snapshots([key]):
            assert_histories_agree(stores, key, limit=limit, bounds=bounds)
