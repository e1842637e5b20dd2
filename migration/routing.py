"""The store the migration phase makes of the two: where each write goes, where each read comes
from (design.md's phases; the flags are read from the database once per operation through
`flags.phases`, and each write holds `flags.write_lock` while it runs).

| phase | writes                                   | balance reads                             |
| ----- | ---------------------------------------- | ----------------------------------------- |
| 0     | MongoDB                                  | MongoDB                                   |
| 1     | MongoDB, outbox mirrored by Celery       | MongoDB                                   |
| 2     | as 1                                     | MongoDB; a sample compared on TigerBeetle |
| 3     | as 1                                     | rollout share: TigerBeetle, falling back  |
| 4     | TigerBeetle only                         | TigerBeetle                               |

Phase 2 compares a sampled share of balance reads, a client's balance list wallet by wallet
too. Phase 3's TigerBeetle reads are retried (`ReadRetry`: the plan's 3 retries after
100 ms x 2^n, none begun past the read's retry budget), then go through a circuit breaker,
and fall back to MongoDB (each fallback counted; a balance list's later wallets too, once
TigerBeetle failed one); a wallet with outbox entries still waiting is read from MongoDB, so
a read is never older than the client's last acknowledged write.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeVar

import pybreaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
)

from domain import errors
from domain.batches import BatchItem, BatchOutcome
from domain.history import HistoryPage, HistoryQuery
from domain.holds import Hold, HoldResult
from domain.ids import WalletKey
from domain.wallets import TransactionRecord, WalletBalance, WalletResult
from flags.phases import MigrationState, Phase, current_state
from flags.write_lock import write_admitted
from ledger import metrics
from ledger.stores.mongo_store import MongoWalletStore
from ledger.stores.tigerbeetle_store import TigerBeetleWalletStore
from migration.models import ReadFallbackCount, ReadRouteCount
from migration.outbox import MirrorOutbox

log = logging.getLogger(__name__)
T = TypeVar("T")
# A batch that wrote to more wallets than this queues one mirror of the whole outbox instead
# of one task per wallet (a batch may touch 8189 wallets).
MIRROR_TASKS_PER_BATCH_MAX = 16


class _BreakerGauge(pybreaker.CircuitBreakerListener):
    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        metrics.BREAKER_OPEN.set(0 if new_state.name == pybreaker.STATE_CLOSED else 1)
        old_name = old_state.name if old_state is not None else None  # None: the first state
        log.warning("TigerBeetle read breaker: %s -> %s", old_name, new_state.name)


def read_breaker(*, failures: int, reset_s: float) -> pybreaker.CircuitBreaker:
    """A breaker on TigerBeetle reads (one per phased store, so one per process): opens after
    `failures` consecutive failures (READ_BREAKER_FAILURES), lets one read through after
    `reset_s` (READ_BREAKER_RESET_S). Only StoreUnavailable counts as a failure."""
    metrics.BREAKER_OPEN.set(0)
    return pybreaker.CircuitBreaker(
        fail_max=failures,
        reset_timeout=reset_s,
        exclude=[lambda exc: not isinstance(exc, errors.StoreUnavailable)],
        listeners=[_BreakerGauge()],
    )


@dataclass(frozen=True)
class ReadRetry:
    """Phase 3's retries of a TigerBeetle read before it counts as one failure for the breaker
    (the plan's Polly `WaitAndRetryAsync(3, n => 100 ms * 2^n)`): after a first try that
    fails with StoreUnavailable, up to `retries` more (TB_READ_RETRY_ATTEMPTS), the n-th after
    waiting `base_s` x 2^n (TB_READ_RETRY_BASE_S): 0.2, 0.4 and 0.8 s by default. Any other
    answer (a wallet TigerBeetle lacks) is not retried. `sleep` is how a wait is spent.

    No retry is begun that would start past `budget_s` (TB_READ_RETRY_BUDGET_S) since the
    first try began: the plan's waits fit in it when TigerBeetle refuses at once, but a
    TigerBeetle that does not answer spends a whole TB_REQUEST_TIMEOUT_S on each try (its
    client resends inside it), and four of them kept a reader waiting over 20 s before
    MongoDB answered. Unbounded (inf) unless given."""

    retries: int
    base_s: float
    budget_s: float = math.inf
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        assert self.retries >= 0, "TB_READ_RETRY_ATTEMPTS is a count of retries: 0 or more"
        assert self.base_s >= 0, "TB_READ_RETRY_BASE_S is a wait: 0 or more seconds"
        assert self.budget_s > 0, "TB_READ_RETRY_BUDGET_S is a time: more than 0 seconds"

    def wait_before_retry_s(self, retry_number: int) -> float:
        """The wait before the retry_number-th retry (1-based). Tenacity also asks it after
        the last try, before it finds it must stop; that wait is never slept."""
        assert retry_number >= 1
        return float(self.base_s * 2**retry_number)

    def call(self, read: Callable[[], T]) -> T:
        """`read()`, retried as the plan says; the last failure is raised as it came."""
        retrying = Retrying(
            retry=retry_if_exception_type(errors.StoreUnavailable),
            stop=stop_any(stop_after_attempt(self.retries + 1), stop_before_delay(self.budget_s)),
            wait=self._wait_s,
            sleep=self.sleep,
            before_sleep=_count_retry,
            reraise=True,
        )
        return retrying(read)

    def _wait_s(self, state: RetryCallState) -> float:
        # attempt_number is the try that just failed: the first retry follows try 1.
        return self.wait_before_retry_s(state.attempt_number)


def _count_retry(state: RetryCallState) -> None:
    metrics.READ_RETRIES.inc()
    log.info("TigerBeetle read failed (try %d); retrying", state.attempt_number)


@dataclass
class _ListReadFailure:
    """Why TigerBeetle failed a list read's wallet ("error", "breaker_open"); "" while none
    has."""

    reason: str = ""


class ShadowEnqueuer(Protocol):
    """Queues a sampled shadow read's comparison with TigerBeetle (the process wiring gives
    the Celery task's); the two ints by keyword, so the read's point and its latency never
    trade places. `mongo_latency_us` None: the read was a list's, whose time is no one
    wallet's (the latency criterion leaves it out)."""

    def __call__(
        self, balance: WalletBalance, *, wallet_seq: int, mongo_latency_us: int | None
    ) -> None: ...


def _shadow_draw() -> Decimal:
    """A read's uniform draw in [0, 100), in steps of 0.01: `MigrationState.shadows` compares
    it with the shadow share. Drawn once per wallet read, for a single balance and for each
    wallet of a list alike, so the share is of wallet reads whatever the endpoint."""
    return Decimal(random.randrange(10_000)) / 100


def _timed(operation: str, *, store: str, call: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return call()
    finally:
        metrics.OPERATION_SECONDS.labels(operation, store).observe(time.perf_counter() - started)


def _count_route(route: str) -> None:
    """Prometheus counts every read; the database keeps the routes of reads meant for
    TigerBeetle (the fallback rate's numerator and denominator), one row per hour and route.
    Reads that simply stay on MongoDB are not written down, so phases 0-2 add no write."""
    metrics.READ_ROUTES.labels(route).inc()
    if route != ReadRouteCount.Route.MONGO:
        ReadRouteCount.bump(route)


def _count_transaction(result: WalletResult, *, store: str, operation: str) -> None:
    """A write the store took (a replay of an id already applied took nothing new)."""
    if result.replayed:
        return
    record = result.transaction
    kind = f"void_{record.kind}" if operation == "void_transaction" else str(record.kind)
    metrics.count_transaction(
        store=store, kind=kind, currency=record.key.currency, amount_minor=record.amount_minor
    )


def _written_key(outcome: BatchOutcome) -> WalletKey | None:
    """The wallet a batch item's result wrote to (None: refused)."""
    if isinstance(outcome, WalletResult):
        return outcome.transaction.key
    if isinstance(outcome, HoldResult):
        return outcome.hold.key
    return None


def _count_batch(outcomes: list[BatchOutcome], *, store: str) -> None:
    """A batch's writes the store took, counted per kind and currency at once."""
    totals: dict[tuple[str, str], list[int]] = {}
    for outcome in outcomes:
        if isinstance(outcome, WalletResult) and not outcome.replayed:
            record = outcome.transaction
            total = totals.setdefault((str(record.kind), record.key.currency), [0, 0])
            total[0] += 1
            total[1] += record.amount_minor
    for (kind, currency), (count, amount_minor) in totals.items():
        metrics.count_transactions(
            store=store, kind=kind, currency=currency, count=count, amount_minor=amount_minor
        )


class PhasedWalletStore:
    """MongoDB and TigerBeetle behind one WalletStore, routed by the migration phase."""

    name = "phased"

    def __init__(
        self,
        mongo: MongoWalletStore,
        tigerbeetle: TigerBeetleWalletStore,
        *,
        outbox: MirrorOutbox,
        breaker: pybreaker.CircuitBreaker,
        read_retry: ReadRetry,
        enqueue_mirror: Callable[[WalletKey], None],
        enqueue_shadow: ShadowEnqueuer,
        enqueue_mirror_pending: Callable[[], None] | None = None,
    ) -> None:
        """`outbox`: MongoDB's outbox (read-your-writes asks it whether a wallet waits for
        the mirror); `breaker`: the breaker on TigerBeetle reads (`read_breaker`), each
        read inside it retried by `read_retry` first.
        `enqueue_mirror(key)` runs after each dual write (queue that wallet's mirror);
        `enqueue_shadow(balance, wallet_seq=..., mongo_latency_us=...)` after each sampled shadow
        read (queue its comparison). The process wiring (`wallet_site.wiring`) supplies the
        Celery tasks; this module never imports them. `enqueue_mirror_pending()` queues one
        mirror of every pending entry, after a batch that wrote to more wallets than
        MIRROR_TASKS_PER_BATCH_MAX (without it, each wallet's mirror is queued)."""
        self.mongo = mongo
        self.tigerbeetle = tigerbeetle
        self.outbox = outbox
        self.breaker = breaker
        self.read_retry = read_retry
        self._enqueue_mirror = enqueue_mirror
        self._enqueue_shadow = enqueue_shadow
        self._enqueue_mirror_pending = enqueue_mirror_pending

    # --- writes ---------------------------------------------------------------------------

    def _write(
        self,
        operation: str,
        *,
        on_mongo: Callable[[], WalletResult],
        on_tigerbeetle: Callable[[], WalletResult],
    ) -> WalletResult:
        # The write lock is held from before the phase is read until the store answered, so a
        # phase change that moves where money is written waits for this write to finish.
        with write_admitted() as admitted:
            state = current_state() if admitted else None
            if state is None or state.writes_paused:
                raise errors.WritesPaused()
            if not state.writes_to_mongo:
                result = _timed(operation, store="tigerbeetle", call=on_tigerbeetle)
                _count_transaction(result, store="tigerbeetle", operation=operation)
                return result
            result = _timed(operation, store="mongo", call=on_mongo)
        _count_transaction(result, store="mongo", operation=operation)
        if state.mirrors_wallets_of(result.transaction.key.client_id):
            # Outside the dual-write share the entry stays in the outbox for the day the
            # share takes the client in; the mirror is not queued for it.
            self._mirror_soon(result.transaction.key)
        return result

    def _mirror_soon(self, key: WalletKey) -> None:
        """Queue the wallet's mirror now for low lag; if that fails the entry is still in the
        outbox and the sweeper applies it."""
        try:
            self._enqueue_mirror(key)
        except Exception:
            log.warning("mirror task for %s not queued; the sweeper will apply it", key.describe())

    def post_batch(
        self, items: Sequence[BatchItem], *, atomic: bool, made_by: str = ""
    ) -> list[BatchOutcome]:
        """A batch goes where a single write goes, under one admission of the write lock for
        all its items; in dual write its entries (hold events included) are mirrored as
        single writes' are (a legacy wallet the backfill has not imported yet takes holds too:
        one placed before its snapshot is carried by the import, one after by the mirror)."""
        with write_admitted() as admitted:
            state = current_state() if admitted else None
            if state is None or state.writes_paused:
                raise errors.WritesPaused()
            store = self.mongo if state.writes_to_mongo else self.tigerbeetle
            outcomes = _timed(
                "post_batch",
                store=store.name,
                call=lambda: store.post_batch(items, atomic=atomic, made_by=made_by),
            )
        _count_batch(outcomes, store=store.name)
        if state.writes_to_mongo:
            self._mirror_batch_soon(
                {
                    key
                    for key in map(_written_key, outcomes)
                    if key is not None and state.mirrors_wallets_of(key.client_id)
                }
            )
        return outcomes

    def _mirror_batch_soon(self, keys: set[WalletKey]) -> None:
        """A batch's wallets' mirrors: one task per wallet for a few wallets, one task for
        every pending entry past MIRROR_TASKS_PER_BATCH_MAX (the mirror applies up to 8189
        entries per TigerBeetle request, so a batch's entries travel as batches too)."""
        if len(keys) <= MIRROR_TASKS_PER_BATCH_MAX or self._enqueue_mirror_pending is None:
            for key in sorted(keys, key=lambda key: key.sort_key()):
                self._mirror_soon(key)
            return
        try:
            self._enqueue_mirror_pending()
        except Exception:
            log.warning("mirror task for a batch not queued; the sweeper will apply it")

    def add_credit(
        self, key: WalletKey, amount_minor: int, transaction_id: str, *, made_by: str = ""
    ) -> WalletResult:
        return self._write(
            "add_credit",
            on_mongo=lambda: self.mongo.add_credit(
                key, amount_minor, transaction_id, made_by=made_by
            ),
            on_tigerbeetle=lambda: self.tigerbeetle.add_credit(
                key, amount_minor, transaction_id, made_by=made_by
            ),
        )

    def subtract_credit(
        self, key: WalletKey, amount_minor: int, reference_id: str, *, made_by: str = ""
    ) -> WalletResult:
        return self._write(
            "subtract_credit",
            on_mongo=lambda: self.mongo.subtract_credit(
                key, amount_minor, reference_id, made_by=made_by
            ),
            on_tigerbeetle=lambda: self.tigerbeetle.subtract_credit(
                key, amount_minor, reference_id, made_by=made_by
            ),
        )

    def void_transaction(self, transaction_id: str, *, voided_by: str, reason: str) -> WalletResult:
        return self._write(
            "void_transaction",
            on_mongo=lambda: self.mongo.void_transaction(
                transaction_id, voided_by=voided_by, reason=reason
            ),
            on_tigerbeetle=lambda: self.tigerbeetle.void_transaction(
                transaction_id, voided_by=voided_by, reason=reason
            ),
        )

    # --- holds: MongoDB's in phases 0-3 (mirrored in 1-3), TigerBeetle's in phase 4 -------

    def _hold_write(
        self,
        operation: str,
        *,
        on_mongo: Callable[[], HoldResult],
        on_tigerbeetle: Callable[[], HoldResult],
    ) -> HoldResult:
        """A hold operation, under the write lock like every write. Phases 0-3 write it to
        MongoDB with its event in the transaction log, which the mirror carries into
        TigerBeetle as every logged write of those phases; docs/holds.md."""
        with write_admitted() as admitted:
            state = current_state() if admitted else None
            if state is None or state.writes_paused:
                raise errors.WritesPaused()
            if not state.writes_to_mongo:
                return _timed(operation, store="tigerbeetle", call=on_tigerbeetle)
            dual_write = state.phase != Phase.LEGACY
            # Every hold event is a log entry (waiting in phase 0 as every entry does), so a
            # wallet born with the log carries its phase-0 holds too.
            result = _timed(operation, store="mongo", call=on_mongo)
        key = result.hold.key
        if dual_write and not result.replayed and state.mirrors_wallets_of(key.client_id):
            self._mirror_soon(key)
        return result

    def place_hold(
        self, key: WalletKey, amount_minor: int, hold_id: str, *, timeout_s: int, made_by: str = ""
    ) -> HoldResult:
        return self._hold_write(
            "place_hold",
            on_mongo=lambda: self.mongo.place_hold(
                key, amount_minor, hold_id, timeout_s=timeout_s, made_by=made_by
            ),
            on_tigerbeetle=lambda: self.tigerbeetle.place_hold(
                key, amount_minor, hold_id, timeout_s=timeout_s, made_by=made_by
            ),
        )

    def capture_hold(
        self, hold_id: str, *, amount_minor: int | None = None, made_by: str = ""
    ) -> HoldResult:
        return self._hold_write(
            "capture_hold",
            on_mongo=lambda: self.mongo.capture_hold(
                hold_id, amount_minor=amount_minor, made_by=made_by
            ),
            on_tigerbeetle=lambda: self.tigerbeetle.capture_hold(
                hold_id, amount_minor=amount_minor, made_by=made_by
            ),
        )

    def release_hold(self, hold_id: str, *, made_by: str = "") -> HoldResult:
        return self._hold_write(
            "release_hold",
            on_mongo=lambda: self.mongo.release_hold(hold_id, made_by=made_by),
            on_tigerbeetle=lambda: self.tigerbeetle.release_hold(hold_id, made_by=made_by),
        )

    def get_hold(self, hold_id: str) -> Hold:
        if current_state().phase == Phase.TIGERBEETLE_ONLY:
            return self.tigerbeetle.get_hold(hold_id)
        return self.mongo.get_hold(hold_id)

    # --- reads ------------------------------------------------------------------------------

    def get_balance(self, key: WalletKey) -> WalletBalance:
        state = current_state()
        if state.phase == Phase.TIGERBEETLE_ONLY:
            return _timed(
                "get_balance", store="tigerbeetle", call=lambda: self.tigerbeetle.get_balance(key)
            )
        if state.reads_from_tigerbeetle(key.client_id):
            return self._cutover_read(key)
        _count_route(ReadRouteCount.Route.MONGO)
        if not state.shadows(_shadow_draw(), client_id=key.client_id):
            return _timed("get_balance", store="mongo", call=lambda: self.mongo.get_balance(key))
        started = time.perf_counter()
        balance, wallet_seq = _timed(
            "get_balance", store="mongo", call=lambda: self.mongo.get_balance_and_seq(key)
        )
        latency_us = int((time.perf_counter() - started) * 1_000_000)
        self._shadow(balance, wallet_seq=wallet_seq, latency_us=latency_us)
        return balance

    def _cutover_read(
        self, key: WalletKey, failure: _ListReadFailure | None = None
    ) -> WalletBalance:
        """`failure`: a list read's, which the first failed TigerBeetle read sets and every
        later wallet of the list falls back by."""
        if self.outbox.has_unmirrored(key):
            # The mirror has not applied this wallet's last write yet: TigerBeetle would
            # answer an older balance than the client was told.
            _count_route(ReadRouteCount.Route.READ_YOUR_WRITES)
            return _timed("get_balance", store="mongo", call=lambda: self.mongo.get_balance(key))
        if failure is not None and failure.reason:
            return self._fallback(key, failure.reason)
        try:
            # Retried inside the breaker: a read that failed every retry is one failure.
            balance = self.breaker.call(
                self.read_retry.call,
                lambda: _timed(
                    "get_balance",
                    store="tigerbeetle",
                    call=lambda: self.tigerbeetle.get_balance(key),
                ),
            )
        except (errors.StoreUnavailable, pybreaker.CircuitBreakerError) as exc:
            reason = "breaker_open" if isinstance(exc, pybreaker.CircuitBreakerError) else "error"
            if failure is not None:
                failure.reason = reason
            return self._fallback(key, reason)
        except errors.WalletNotFound:
            return self._fallback(key, "not_in_tigerbeetle")
        _count_route(ReadRouteCount.Route.TIGERBEETLE)
        return balance

    def _fallback(self, key: WalletKey, reason: str) -> WalletBalance:
        metrics.FALLBACKS.labels(reason).inc()
        _count_route(ReadRouteCount.Route.FALLBACK)
        ReadFallbackCount.bump(reason)  # the guard's TigerBeetle error rate
        log.info("balance of %s served by MongoDB (%s)", key.describe(), reason)
        return _timed("get_balance", store="mongo", call=lambda: self.mongo.get_balance(key))

    def _shadow(self, balance: WalletBalance, *, wallet_seq: int, latency_us: int | None) -> None:
        try:
            self._enqueue_shadow(balance, wallet_seq=wallet_seq, mongo_latency_us=latency_us)
        except Exception:
            log.warning("shadow comparison of %s not queued", balance.key.describe())

    def get_balances(self, client_id: str) -> list[WalletBalance]:
        state = current_state()
        if state.phase == Phase.TIGERBEETLE_ONLY:
            return self.tigerbeetle.get_balances(client_id)
        if state.phase == Phase.SHADOW_READ:
            return self._shadowed_balances(client_id, state)
        if not state.reads_from_tigerbeetle(client_id):
            return self.mongo.get_balances(client_id)
        # Cutover: per-wallet routing keeps read-your-writes and fallback for each wallet.
        # Once TigerBeetle failed one wallet's read, the list's others fall back without asking
        # it: one that does not answer would cost each of them a request timeout.
        failure = _ListReadFailure()
        return [self._cutover_read(b.key, failure) for b in self.mongo.get_balances(client_id)]

    def _shadowed_balances(self, client_id: str, state: MigrationState) -> list[WalletBalance]:
        """Phase 2's balance list: MongoDB answers, and each wallet in it is compared like a
        single balance read, drawn on its own, at the wallet_seq the list saw."""
        read = self.mongo.get_balances_and_seqs(client_id)
        for balance, wallet_seq in read:
            if state.shadows(_shadow_draw(), client_id=client_id):
                self._shadow(balance, wallet_seq=wallet_seq, latency_us=None)
        return [balance for balance, _ in read]

    def history(self, query: HistoryQuery) -> HistoryPage:
        """Routed as a balance read: TigerBeetle in phase 4 and for the cutover's share
        (never while the wallet waits for the mirror; MongoDB when TigerBeetle fails or
        lacks the wallet), MongoDB otherwise. Both answer alike (`domain.history`)."""
        key = query.key
        state = current_state()
        if state.phase == Phase.TIGERBEETLE_ONLY:
            return self.tigerbeetle.history(query)
        if not state.reads_from_tigerbeetle(key.client_id) or self.outbox.has_unmirrored(key):
            return self.mongo.history(query)
        try:
            return self.breaker.call(self.read_retry.call, lambda: self.tigerbeetle.history(query))
        except (
            errors.StoreUnavailable,
            pybreaker.CircuitBreakerError,
            errors.WalletNotFound,
            errors.InvalidCursor,  # a point before the wallet's import: MongoDB holds it
        ):
            log.info("history of %s served by MongoDB", key.describe())
            return self.mongo.history(query)

    def get_transaction(self, transaction_id: str) -> TransactionRecord:
        if current_state().phase == Phase.TIGERBEETLE_ONLY:
            return self.tigerbeetle.get_transaction(transaction_id)
        return self.mongo.get_transaction(transaction_id)


def key_to_dict(key: WalletKey) -> dict[str, str | None]:
    """A wallet key as a Celery task's argument (JSON on the wire; issuer null for none)."""
    return key.as_dict()


def key_from_dict(data: dict[str, str | None]) -> WalletKey:
    return WalletKey.from_mapping(data)
