"""The real-client backend's own duties: batching, fork safety, timeouts, error mapping.

These need no cluster: a recording stand-in plays the ClientSync collaborator, and the
timeout tests point a real ClientSync at a loopback port where nothing listens.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Set

import pytest
import tigerbeetle as tb
from tigerbeetle.client import Client

from ledger.backends.base import BATCH_EVENTS_MAX, LedgerUnavailable
from ledger.backends.tigerbeetle_client import (
    CLOSE_WAIT_S,
    TigerBeetleBackend,
    chain_safe_chunks,
)


class RecordingClient:
    """Stands in for ClientSync: records each request, answers CREATED per event."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.requests: list[list[object]] = []
        self.fail_with = fail_with
        self.closed = False

    def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        if self.fail_with:
            raise self.fail_with
        self.requests.append(transfers)
        return [
            tb.CreateTransferResult(timestamp=1, status=tb.CreateTransferStatus.CREATED)
            for _ in transfers
        ]

    def lookup_accounts(self, ids: list[int]) -> list[tb.Account]:
        self.requests.append(ids)
        return [tb.Account(id=i) for i in ids]

    def close(self) -> None:
        self.closed = True


def transfers(count: int, linked: Set[int] = frozenset()) -> list[tb.Transfer]:
    return [
        tb.Transfer(
            id=i + 1, flags=tb.TransferFlags.LINKED if i in linked else tb.TransferFlags.NONE
        )
        for i in range(count)
    ]


def backend_with(client: RecordingClient) -> TigerBeetleBackend:
    return TigerBeetleBackend(
        0, "127.0.0.1:1", request_timeout_s=5, client_factory=lambda *_: client
    )


def test_a_list_within_the_limit_is_one_request() -> None:
    assert [len(c) for c in chain_safe_chunks(transfers(10), size=10)] == [10]


def test_a_longer_list_is_split_at_the_limit() -> None:
    assert [len(c) for c in chain_safe_chunks(transfers(25), size=10)] == [10, 10, 5]


def test_a_split_never_falls_inside_a_linked_chain() -> None:
    # events 8..11 form a chain (8, 9, 10 linked; 11 closes it)
    chunks = chain_safe_chunks(transfers(15, linked={8, 9, 10}), size=10)

    assert [len(c) for c in chunks] == [8, 7]


def test_a_chain_longer_than_the_limit_is_kept_whole() -> None:
    chunks = chain_safe_chunks(transfers(14, linked=set(range(11))), size=10)

    assert [len(c) for c in chunks] == [12, 2]


def test_results_of_split_requests_come_back_in_order() -> None:
    client = RecordingClient()
    events = transfers(BATCH_EVENTS_MAX + 5)

    results = backend_with(client).create_transfers(events)

    assert [len(r) for r in client.requests] == [BATCH_EVENTS_MAX, 5]
    assert len(results) == len(events)


def test_lookups_longer_than_the_limit_are_split() -> None:
    client = RecordingClient()

    found = backend_with(client).lookup_accounts(list(range(1, BATCH_EVENTS_MAX + 3)))

    assert [len(r) for r in client.requests] == [BATCH_EVENTS_MAX, 2]
    assert [a.id for a in found] == list(range(1, BATCH_EVENTS_MAX + 3))


class MisansweringClient(RecordingClient):
    """A client that breaks the protocol: one result short, and a stranger in lookups."""

    def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        return super().create_transfers(transfers)[:-1]

    def lookup_accounts(self, ids: list[int]) -> list[tb.Account]:
        return [*super().lookup_accounts(ids), tb.Account(id=max(ids) + 1)]


def test_a_create_answer_without_one_result_per_event_is_an_assertion_failure() -> None:
    with pytest.raises(AssertionError, match="2 results for 3 events"):
        backend_with(MisansweringClient()).create_transfers(transfers(3))


def test_a_lookup_answering_an_id_not_asked_for_is_an_assertion_failure() -> None:
    with pytest.raises(AssertionError):
        backend_with(MisansweringClient()).lookup_accounts([1, 2])


@pytest.mark.parametrize(
    "error", [tb.ClientEvictedError(), tb.ClientClosedError(), tb.TooMuchDataError(), OSError("x")]
)
def test_client_failures_surface_as_ledger_unavailable_with_the_cause(error: Exception) -> None:
    with pytest.raises(LedgerUnavailable) as raised:
        backend_with(RecordingClient(fail_with=error)).create_transfers(transfers(1))

    assert raised.value.__cause__ is error


def test_after_a_failure_the_next_call_makes_a_fresh_client() -> None:
    made: list[RecordingClient] = []

    def factory(*_: object) -> RecordingClient:
        made.append(RecordingClient(fail_with=tb.ClientEvictedError() if not made else None))
        return made[-1]

    backend = TigerBeetleBackend(0, "127.0.0.1:1", request_timeout_s=5, client_factory=factory)
    with pytest.raises(LedgerUnavailable):
        backend.create_transfers(transfers(1))

    assert backend.create_transfers(transfers(1))[0].status == tb.CreateTransferStatus.CREATED
    assert len(made) == 2


@pytest.fixture
def process_backend_of_its_own() -> Iterator[None]:
    """These tests make the process's backend point at nowhere: the suite's own (the real
    cluster's session, when there is one) is set aside and comes back afterwards."""
    saved = (TigerBeetleBackend._process_instance, TigerBeetleBackend._process_pid)
    TigerBeetleBackend._process_instance = None
    yield
    TigerBeetleBackend.close_process_backend()
    TigerBeetleBackend._process_instance, TigerBeetleBackend._process_pid = saved


@pytest.mark.usefixtures("process_backend_of_its_own")
def test_the_process_backend_is_shared_within_a_process() -> None:
    first = TigerBeetleBackend.for_process(0, "127.0.0.1:1")

    assert TigerBeetleBackend.for_process(0, "127.0.0.1:1") is first


@pytest.mark.usefixtures("process_backend_of_its_own")
def test_asking_the_process_backend_for_another_cluster_closes_the_old_one() -> None:
    client = RecordingClient()
    first = TigerBeetleBackend.for_process(0, "127.0.0.1:1")
    first._client_factory = lambda *_: client
    first.lookup_accounts([1])

    second = TigerBeetleBackend.for_process(0, "127.0.0.1:2")

    assert second is not first and second.addresses == "127.0.0.1:2"
    assert client.closed


@pytest.mark.usefixtures("process_backend_of_its_own")
def test_closing_the_process_backend_ends_its_session_and_forgets_it() -> None:
    client = RecordingClient()
    backend = TigerBeetleBackend.for_process(0, "127.0.0.1:1")
    backend._client_factory = lambda *_: client
    backend.lookup_accounts([1])

    TigerBeetleBackend.close_process_backend()

    assert client.closed
    assert TigerBeetleBackend.for_process(0, "127.0.0.1:1") is not backend


def test_closing_a_backend_closes_its_client_before_returning() -> None:
    client = RecordingClient()
    backend = backend_with(client)
    backend.lookup_accounts([1])

    backend.close()

    assert client.closed


@pytest.mark.usefixtures("process_backend_of_its_own")
def test_a_forked_child_gets_its_own_process_backend() -> None:
    parent_backend = TigerBeetleBackend.for_process(0, "127.0.0.1:1")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        child_backend = TigerBeetleBackend.for_process(0, "127.0.0.1:1")
        os.write(write_end, b"new" if child_backend is not parent_backend else b"same")
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 16)
    os.waitpid(child, 0)

    assert answer == b"new"


def silent_address() -> str:
    """A loopback address where nothing listens: a cluster that is away."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_cluster_that_never_answers_is_unavailable_within_the_timeout() -> None:
    backend = TigerBeetleBackend(0, silent_address(), request_timeout_s=0.5)
    try:
        with pytest.raises(LedgerUnavailable, match="did not answer"):
            backend.lookup_accounts([1])
    finally:
        backend.close()


def test_a_request_behind_one_that_timed_out_is_unavailable_after_their_client_closed() -> None:
    """A write's timeout discards its client, which closes on a thread of its own and answers
    the read sent behind the write (a balance read, a batch's lookup); collected after that
    close, the read is LedgerUnavailable too (it was a KeyError, a 500, when the closing
    thread came first: the fault matrix's tigerbeetle x phase 4 on CI)."""
    backend = TigerBeetleBackend(0, silent_address(), request_timeout_s=0.2)
    try:
        write = backend.begin_create_transfers(transfers(1))
        read_behind = backend.begin_lookup_accounts([1])
        client_key = backend._client._client_key
        with pytest.raises(LedgerUnavailable, match="did not answer"):
            write()
        closed_by = time.monotonic() + CLOSE_WAIT_S
        while client_key in Client._clients and time.monotonic() < closed_by:
            time.sleep(0.01)
        assert client_key not in Client._clients, "the discarded client did not close"

        with pytest.raises(LedgerUnavailable, match="ClientClosedError"):
            read_behind()
    finally:
        backend.close()
