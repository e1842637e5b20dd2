"""Invariants under random workloads: every ledger sums to zero, and an account with
`debits_must_not_exceed_credits` never goes below zero, however transfers interleave."""

from __future__ import annotations

import multiprocessing
import random

import pytest
import tigerbeetle as tb
from django.db import connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.backends.base import LedgerBackend
from tests.concurrency import run_concurrently
from tests.conftest import make_backend
from tests.ledger.builders import AF, TF, new_accounts, transfer

ACCOUNT_FLAGS = [AF.NONE, AF.DEBITS_MUST_NOT_EXCEED_CREDITS, AF.DEBITS_MUST_NOT_EXCEED_CREDITS]

operations = st.lists(
    st.tuples(
        st.integers(0, 4),  # debit account index
        st.integers(0, 4),  # credit account index
        st.integers(0, 500),  # amount
        st.sampled_from([TF.NONE, TF.PENDING, TF.LINKED, TF.BALANCING_DEBIT]),
    ),
    min_size=1,
    max_size=30,
)


def assert_invariants(backend: LedgerBackend, accounts: list[tb.Account]) -> None:
    found = backend.lookup_accounts([a.id for a in accounts])
    assert sum(a.debits_posted for a in found) == sum(a.credits_posted for a in found)
    assert sum(a.debits_pending for a in found) == sum(a.credits_pending for a in found)
    for a in found:
        if a.flags & AF.DEBITS_MUST_NOT_EXCEED_CREDITS:
            assert a.debits_posted + a.debits_pending <= a.credits_posted


def random_transfers(accounts: list[tb.Account], *, count: int, seed: int) -> list[tb.Transfer]:
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        debit, credit = rng.sample(accounts, 2)
        flags = rng.choice([TF.NONE, TF.NONE, TF.PENDING])
        events.append(transfer(debit, credit=credit, amount=rng.randint(1, 300), flags=flags))
    return events


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(operations, min_size=1, max_size=4))
def test_random_batches_keep_the_ledger_balanced_and_bounded_accounts_non_negative(
    ledger_backend: LedgerBackend, batches: list
) -> None:
    funding = new_accounts(ledger_backend, AF.NONE)
    accounts = funding + new_accounts(ledger_backend, *ACCOUNT_FLAGS, AF.HISTORY)
    ledger_backend.create_transfers(
        [transfer(funding[0], credit=a, amount=1_000) for a in accounts[1:]]
    )
    for batch in batches:
        events = [
            transfer(accounts[d], credit=accounts[c], amount=amount, flags=flags)
            for d, c, amount, flags in batch
        ]
        ledger_backend.create_transfers(events)
        assert_invariants(ledger_backend, accounts)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_threads_writing_at_once_keep_the_invariants() -> None:
    backend = make_backend("engine")
    accounts = new_accounts(backend, AF.NONE, *ACCOUNT_FLAGS, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    backend.create_transfers([transfer(accounts[0], credit=a, amount=2_000) for a in accounts[1:]])

    def write(seed: int) -> None:
        for batch_index in range(5):
            backend.create_transfers(
                random_transfers(accounts, count=20, seed=seed * 100 + batch_index)
            )

    run_concurrently(write, range(8), workers=8)

    assert_invariants(backend, accounts)


def _process_writer(account_ids: list[int], seed: int, done: multiprocessing.Queue) -> None:
    """Runs in a forked child: a fresh database connection, the same test database."""
    connections.close_all()
    try:
        backend = make_backend("engine")
        accounts = [tb.Account(id=i) for i in account_ids]
        for batch_index in range(5):
            backend.create_transfers(
                random_transfers(accounts, count=20, seed=seed * 100 + batch_index)
            )
        done.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test
        done.put(repr(exc))
    finally:
        connections.close_all()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_processes_writing_at_once_keep_the_invariants() -> None:
    backend = make_backend("engine")
    accounts = new_accounts(backend, AF.NONE, *ACCOUNT_FLAGS, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    backend.create_transfers([transfer(accounts[0], credit=a, amount=2_000) for a in accounts[1:]])
    connections.close_all()  # children must not share the parent's connection
    context = multiprocessing.get_context("fork")
    done: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(target=_process_writer, args=([a.id for a in accounts], seed, done))
        for seed in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes = [done.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert outcomes == ["ok"] * len(workers)
    assert_invariants(backend, accounts)
    transfers = backend.get_account_transfers(
        tb.AccountFilter(
            account_id=accounts[0].id,
            user_data_128=0,
            user_data_64=0,
            user_data_32=0,
            code=0,
            timestamp_min=0,
            timestamp_max=0,
            limit=8189,
            flags=tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS,
        )
    )
    stamps = [t.timestamp for t in transfers]
    assert len(set(stamps)) == len(stamps)
