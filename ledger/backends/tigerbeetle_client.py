"""The real TigerBeetle backend: `tigerbeetle.ClientSync`, one per process.

- One client per process (`for_process`): each client holds one of the cluster's client
  sessions (32 by default) until closed. Created lazily and re-created in a forked child
  (gunicorn and Celery prefork workers fork after import; a client's native threads do not
  survive a fork), closed at exit.
- Lists longer than a request may carry (8189 events) are sent as consecutive requests; a
  split never falls inside a linked chain, so a chain stays atomic.
- ClientSync blocks until a replica answers; each request is bounded by TB_REQUEST_TIMEOUT_S
  and a client that timed out is discarded, so the next call starts a fresh session. The
  client (`DeadlineClient`, a ClientSync of the pinned 0.17.9 library) sends a request and
  waits for its answer in two steps, the wait bounded in the caller's own thread: a worker
  thread per request cost a thread hand-off each way, ~0.05 ms of a 0.8 ms lookup. Clients
  from a `client_factory` (tests) are called through a worker thread instead.
- Every client failure surfaces as `LedgerUnavailable`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import operator
import os
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import tigerbeetle as tb
from django.conf import settings
from tigerbeetle import bindings
from tigerbeetle.client import Client, CompletionContextSync, InflightPacket

from ledger.backends.base import (
    BATCH_EVENTS_MAX,
    LedgerUnavailable,
    assert_lookup_answers,
    assert_one_result_per_event,
)

T = TypeVar("T")
CLOSE_WAIT_S = 5.0

CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    tb.ClientClosedError,
    tb.ClientEvictedError,
    tb.ClientReleaseTooLowError,
    tb.ClientReleaseTooHighError,
    tb.TooMuchDataError,
    tb.NativeError,
    tb.client.InitError,
    OSError,
)


def chain_safe_chunks(events: Sequence[Any], size: int = BATCH_EVENTS_MAX) -> list[Sequence[Any]]:
    """Consecutive slices of at most `size` events, each ending where a linked chain ends.

    A chain longer than `size` cannot be sent atomically at all; it is sent as one slice and
    TigerBeetle refuses it whole (the client raises TooMuchDataError -> LedgerUnavailable).
    """
    chunks: list[Sequence[Any]] = []
    start = 0
    while start < len(events):
        end = min(start + size, len(events))
        if end < len(events):
            cut = end
            while cut > start and events[cut - 1].flags & 1:  # flags.linked = 1 << 0
                cut -= 1
            if cut > start:
                end = cut
            else:  # one chain fills the slice: keep it whole
                end = start + size
                while end < len(events) and events[end - 1].flags & 1:
                    end += 1
        chunks.append(events[start:end])
        start = end
    return chunks


def _event_bytes(
    wide_fields: tuple[str, ...], tail: struct.Struct, tail_fields: tuple[str, ...]
) -> Callable[[Any], bytes]:
    """The wire form of one event (tb_client.h, 128 bytes): its u128 fields little-endian,
    then the narrower ones as `tail` lays them out."""
    wide = operator.attrgetter(*wide_fields)
    narrow = operator.attrgetter(*tail_fields)

    def to_bytes(event: Any) -> bytes:
        head = b"".join([value.to_bytes(16, "little") for value in wide(event)])
        return head + tail.pack(*narrow(event))

    return to_bytes


_transfer_bytes = _event_bytes(
    ("id", "debit_account_id", "credit_account_id", "amount", "pending_id", "user_data_128"),
    struct.Struct("<QIIIHHQ"),  # the transfer's u32 timeout sits after user_data_32
    ("user_data_64", "user_data_32", "timeout", "ledger", "code", "flags", "timestamp"),
)
_account_bytes = _event_bytes(
    ("id", "debits_pending", "debits_posted", "credits_pending", "credits_posted", "user_data_128"),
    struct.Struct("<QI4xIHHQ"),  # four reserved zero bytes where a transfer has its timeout
    ("user_data_64", "user_data_32", "ledger", "code", "flags", "timestamp"),
)
_EVENT_BYTES: dict[Any, Callable[[Any], bytes]] = {
    bindings.CTransfer: _transfer_bytes,
    bindings.CAccount: _account_bytes,
}
assert all(ctypes.sizeof(c_type) == 128 for c_type in _EVENT_BYTES)


def packed_events(c_event_type: Any, events: Sequence[Any]) -> Any:
    """The C array of `events`, packed with `struct`: the library's per-field conversion
    (`from_param`, a ctypes object per u128) cost ~11 us per transfer, a tenth of a credit's
    own work and ~90 ms of every full batch the backfill sends. Bytes identical to the
    library's; an event it would refuse (or truncate) is handed to the library, whose error
    or result then stands. None: not an event type packed here."""
    to_bytes = _EVENT_BYTES.get(c_event_type)
    if to_bytes is None or not events:
        return None
    try:
        data = b"".join(map(to_bytes, events))
    except (OverflowError, struct.error, AttributeError, TypeError):
        return None
    return (c_event_type * len(events)).from_buffer_copy(data)


class RequestTimedOut(Exception):
    """No answer within the deadline; the request stays in flight until its client closes."""


class PendingRequest:
    """A request DeadlineClient has sent; `wait` answers it as ClientSync would have."""

    def __init__(self, client: DeadlineClient, inflight: InflightPacket, state: Any) -> None:
        self._client = client
        self._inflight = inflight
        self._state = state

    def wait(self, timeout_s: float) -> Any:
        inflight = self._inflight
        context = inflight.on_completion_context
        assert isinstance(context, CompletionContextSync)
        if self._state == bindings.ClientStatus.OK and not context.event.wait(timeout_s):
            raise RequestTimedOut  # the packet stays registered: the client must be closed
        # Already forgotten if another request's timeout discarded the client meanwhile: its
        # close (on a thread of its own) answered this one ClientClosedError, raised below.
        self._client._inflight_packets.pop(inflight.packet.user_data, None)
        if self._state == bindings.ClientStatus.INVALID:
            raise tb.ClientClosedError()
        if isinstance(inflight.response, Exception):
            raise inflight.response
        return inflight.response


class DeadlineClient(tb.ClientSync):
    """ClientSync whose operations return a PendingRequest as soon as the request is sent
    (its `_submit` is ClientSync's, split before the wait), and whose transfers and accounts
    are packed by `packed_events`. Relies on the internals of tigerbeetle 0.17.9, the version
    requirements.txt pins; the suite runs it against the real server, the timeout included."""

    def _acquire_packet(
        self, operation: Any, operations: Any, c_event_type: Any, c_result_type: Any
    ) -> InflightPacket:
        """Client._acquire_packet, with the events packed by `packed_events` when it can.
        Positional parameters, as the library's own: it calls this override so."""
        array = packed_events(c_event_type, operations)
        if array is None:
            return super()._acquire_packet(operation, operations, c_event_type, c_result_type)
        packet = bindings.CPacket()
        packet.next = None
        packet.user_data = Client._counter.increment()
        packet.user_tag = 0
        packet.operation = operation
        packet.status = bindings.PacketStatus.OK
        packet.data_size = ctypes.sizeof(array)
        packet.data = ctypes.cast(array, ctypes.c_void_p)  # the packet keeps `array` alive
        return InflightPacket(
            packet=packet,
            response=None,
            on_completion=None,
            on_completion_context=None,
            operation=operation,
            c_event_type=c_event_type,
            c_result_type=c_result_type,
        )

    def _submit(
        self, operation: Any, operations: list[Any], c_event_type: Any, c_result_type: Any
    ) -> PendingRequest:
        """ClientSync._submit up to the wait; positional parameters, as the library calls it."""
        inflight = self._acquire_packet(operation, operations, c_event_type, c_result_type)
        self._inflight_packets[inflight.packet.user_data] = inflight
        inflight.on_completion = self._on_completion
        inflight.on_completion_context = CompletionContextSync(event=threading.Event())
        state = bindings.tb_client_submit(ctypes.byref(self._client), ctypes.byref(inflight.packet))
        return PendingRequest(self, inflight, state)

    def close(self) -> None:
        """ClientSync's close, also when a request timed out: shutting the client down
        answers what was still in flight, so nothing is left to wait for, and forgets it,
        also a request whose answer a caller has yet to collect (`PendingRequest.wait`)."""
        bindings.tb_client_deinit(ctypes.byref(self._client))
        self._inflight_packets.clear()
        Client._clients.pop(self._client_key, None)


class TigerBeetleBackend:
    """LedgerBackend over a TigerBeetle cluster."""

    _process_instance: TigerBeetleBackend | None = None
    _process_pid: int | None = None
    _process_lock = threading.Lock()
    # The client is shared by the process's threads (the backfill writes from one of its
    # own); the embedded engine, on the caller's database connection, is not.
    callable_from_any_thread = True

    def __init__(
        self,
        cluster_id: int,
        addresses: str,
        request_timeout_s: float | None = None,
        client_factory: Callable[[int, str], Any] | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.addresses = addresses
        self.request_timeout_s = (
            request_timeout_s if request_timeout_s is not None else settings.TB_REQUEST_TIMEOUT_S
        )
        self._client_factory = client_factory or (
            lambda cluster, replicas: DeadlineClient(cluster_id=cluster, replica_addresses=replicas)
        )
        self._client: Any = None
        self._client_pid: int | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def for_process(cls, cluster_id: int, addresses: str) -> TigerBeetleBackend:
        """The process-wide backend: one client, so one cluster session, per process. A forked
        child gets its own; asked for another cluster, the old one is closed first."""
        with cls._process_lock:
            current = cls._process_instance
            if current is not None and cls._process_pid == os.getpid():
                if (current.cluster_id, current.addresses) == (cluster_id, addresses):
                    return current
                current.close()
            cls._process_instance = cls(cluster_id=cluster_id, addresses=addresses)
            cls._process_pid = os.getpid()
            return cls._process_instance

    @classmethod
    def close_process_backend(cls) -> None:
        """Close this process's backend (at exit, and when a test session ends)."""
        with cls._process_lock:
            current, cls._process_instance = cls._process_instance, None
            owned = cls._process_pid == os.getpid()
        if current is not None and owned:
            current.close()

    # --- the protocol ----------------------------------------------------------------------

    def create_accounts(self, accounts: list[tb.Account]) -> list[tb.CreateAccountResult]:
        return self._batched("create_accounts", accounts)

    def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        return self._batched("create_transfers", transfers)

    def lookup_accounts(self, account_ids: list[int]) -> list[tb.Account]:
        found: list[tb.Account] = self._plain_batched("lookup_accounts", account_ids)
        assert_lookup_answers(ids=account_ids, found=found)
        return found

    def lookup_transfers(self, transfer_ids: list[int]) -> list[tb.Transfer]:
        found: list[tb.Transfer] = self._plain_batched("lookup_transfers", transfer_ids)
        assert_lookup_answers(ids=transfer_ids, found=found)
        return found

    def get_account_transfers(self, account_filter: tb.AccountFilter) -> list[tb.Transfer]:
        found: list[tb.Transfer] = self._call("get_account_transfers", account_filter)
        return found

    def get_account_balances(self, account_filter: tb.AccountFilter) -> list[tb.AccountBalance]:
        found: list[tb.AccountBalance] = self._call("get_account_balances", account_filter)
        return found

    def begin_create_transfers(
        self, transfers: list[tb.Transfer]
    ) -> Callable[[], list[tb.CreateTransferResult]]:
        assert 0 < len(transfers) <= BATCH_EVENTS_MAX, "one request: at most one batch"
        answer = self._begin("create_transfers", transfers)

        def results() -> list[tb.CreateTransferResult]:
            found: list[tb.CreateTransferResult] = answer()
            assert_one_result_per_event(events=transfers, results=found)
            return found

        return results

    def begin_lookup_accounts(self, account_ids: list[int]) -> Callable[[], list[tb.Account]]:
        assert 0 < len(account_ids) <= BATCH_EVENTS_MAX, "one request: at most one batch"
        answer = self._begin("lookup_accounts", account_ids)

        def found() -> list[tb.Account]:
            accounts: list[tb.Account] = answer()
            assert_lookup_answers(ids=account_ids, found=accounts)
            return accounts

        return found

    def begin_get_account_balances(
        self, account_filter: tb.AccountFilter
    ) -> Callable[[], list[tb.AccountBalance]]:
        answer: Callable[[], list[tb.AccountBalance]] = self._begin(
            "get_account_balances", account_filter
        )
        return answer

    def query_accounts(self, query_filter: tb.QueryFilter) -> list[tb.Account]:
        found: list[tb.Account] = self._call("query_accounts", query_filter)
        return found

    def query_transfers(self, query_filter: tb.QueryFilter) -> list[tb.Transfer]:
        found: list[tb.Transfer] = self._call("query_transfers", query_filter)
        return found

    def requests_in_flight(self) -> int:
        """Requests this process's client sent and nobody has collected the answer of: zero
        between operations (an uncollected one would stay registered in the client)."""
        with self._lock:
            client = self._client
        if isinstance(client, DeadlineClient):
            return len(client._inflight_packets)
        return 0

    def close(self) -> None:
        """End the client's session now; a later call opens a new one."""
        with self._lock:
            self._discard_client(wait_s=CLOSE_WAIT_S)
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    # --- internals -------------------------------------------------------------------------

    def _batched(self, operation: str, events: list[Any]) -> list[Any]:
        results: list[Any] = []
        for chunk in chain_safe_chunks(events):
            chunk_results = self._call(operation, list(chunk))
            assert_one_result_per_event(events=chunk, results=chunk_results)
            results.extend(chunk_results)
        return results

    def _plain_batched(self, operation: str, ids: list[int]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(ids), BATCH_EVENTS_MAX):
            chunk = ids[start : start + BATCH_EVENTS_MAX]
            assert 0 < len(chunk) <= BATCH_EVENTS_MAX
            results.extend(self._call(operation, chunk))
        return results

    def _call(self, operation: str, argument: Any) -> Any:
        return self._begin(operation, argument)()

    def _begin(self, operation: str, argument: Any) -> Callable[[], Any]:
        """Send the request now; the returned call waits for its answer, at most
        TB_REQUEST_TIMEOUT_S from then (a client from a `client_factory` is called from a
        worker thread, since it blocks)."""
        client = self._current_client()
        if isinstance(client, DeadlineClient):
            wait = self._send(client, operation, argument)
        else:
            wait = self._worker().submit(getattr(client, operation), argument).result

        def answer() -> Any:
            try:
                return wait(timeout=self.request_timeout_s)
            except (FutureTimeout, RequestTimedOut) as exc:
                with self._lock:
                    if self._client is client:
                        self._discard_client()
                raise LedgerUnavailable(
                    f"TigerBeetle at {self.addresses} did not answer {operation} "
                    f"within {self.request_timeout_s}s"
                ) from exc
            except CLIENT_ERRORS as exc:
                with self._lock:
                    if self._client is client:
                        self._discard_client()
                raise LedgerUnavailable(f"TigerBeetle {operation} failed: {exc!r}") from exc

        return answer

    def _send(self, client: DeadlineClient, operation: str, argument: Any) -> Callable[..., Any]:
        try:
            pending: PendingRequest = getattr(client, operation)(argument)
        except CLIENT_ERRORS as exc:
            with self._lock:
                if self._client is client:
                    self._discard_client()
            raise LedgerUnavailable(f"TigerBeetle {operation} failed: {exc!r}") from exc
        return lambda timeout: pending.wait(timeout)

    def _current_client(self) -> Any:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                if self._client_pid != os.getpid():
                    # Inherited across fork: its native threads are gone; never touch it.
                    self._client = None
                    self._executor = None
                try:
                    self._client = self._client_factory(self.cluster_id, self.addresses)
                except CLIENT_ERRORS as exc:
                    raise LedgerUnavailable(f"cannot start a TigerBeetle client: {exc!r}") from exc
                self._client_pid = os.getpid()
            return self._client

    def _worker(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tb-request")
            return self._executor

    def _discard_client(self, wait_s: float = 0.0) -> None:
        """Close the client, waiting at most `wait_s` for it: a request that never completes
        must not hang the caller."""
        client, self._client = self._client, None
        if client is None or self._client_pid != os.getpid():
            return
        closer = threading.Thread(target=_close_quietly, args=(client,), daemon=True)
        closer.start()
        closer.join(timeout=wait_s)


atexit.register(TigerBeetleBackend.close_process_backend)


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close()
