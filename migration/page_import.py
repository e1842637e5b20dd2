"""A backfill page's TigerBeetle half: its imported accounts and opening pairs stamped past
the cluster's clock and created, and tried again while live writes race past the stamps.

TigerBeetle refuses an imported event whose timestamp is not past the newest account
(for an account) or transfer (for a transfer) it holds (`must_not_regress`), or is ahead of
its clock (`must_not_advance`). A live write (the mirror's) that lands between a page's
stamps and its send makes it refuse the whole batch. The page is stamped again past the
cluster's own answer and sent again; a page raced UNPAUSED_ATTEMPTS times holds the share
fence exclusively for the rest (`flags.write_lock.mirror_runs_paused`), so no mirror run
sends meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from tigerbeetle import (
    Account,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    Transfer,
)

from domain.ids import WalletKey
from flags.write_lock import mirror_runs_paused
from ledger.batches import LedgerBatches
from ledger.tb_model import imported_system_account, stamp_import
from migration.backfill_holds import CarriedHolds, HoldImport
from migration.legacy_scan import WalletSnapshot

log = logging.getLogger(__name__)

# Attempts at a page's accounts, and at its transfers, while live writes race past the
# stamps chosen (each a round trip and a pause of at most REGRESS_PAUSE_MAX_S).
REGRESS_RETRIES = 20
REGRESS_PAUSE_MAX_S = 0.02
# Attempts a raced page makes beside the mirror before it pauses it for the rest: under
# steady writes most pages' first send is raced, and beside the mirror most pages won after
# one or two races; pausing the mirror from the first race on held its lag back (a million
# wallets: p99 70.6 s -> 220 s).
UNPAUSED_ATTEMPTS = 3
# How long a page waits for the mirror runs in flight to finish before it tries again beside
# them (`PageImport._mirror_paused`).
MIRROR_PAUSE_WAIT_S = 30.0
_ACCEPTED_ACCOUNT = {CreateAccountStatus.CREATED, CreateAccountStatus.EXISTS}
# A live write took a later timestamp than the ones chosen (regress), or the chosen ones ran
# ahead of the cluster clock (advance): choose again.
_RETRY = {
    CreateAccountStatus.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
    CreateAccountStatus.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE,
    CreateTransferStatus.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
    CreateTransferStatus.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE,
}


def _log_refused(what: str, results: Sequence[CreateAccountResult | CreateTransferResult]) -> None:
    """Which timestamp refusals a page's attempt met (regress or advance, how many): what
    tells a page that kept failing from another (at a million wallets, 1 page of 250)."""
    refused = Counter(r.status.name for r in results if r.status in _RETRY)
    log.warning("backfill: a page's %s were refused: %s", what, dict(refused))


def _regress_pause_s(attempt: int) -> float:
    return min(0.001 * 2**attempt, REGRESS_PAUSE_MAX_S)


def _moved_on(timestamp: int, *, since_ns: int) -> int:
    """A cluster timestamp learnt at `since_ns` (our monotonic clock), moved on by the time
    ours has run since: the cluster's has run at least as long, so stamps from there are
    not ahead of it (never `must_not_advance`), and the window in which a live write can
    take a later timestamp first (`must_not_regress`) shrinks to the send's own transit.
    At a million wallets and 100 writes/s, stamps at the learnt timestamp itself lost that
    race five times running for 7 pages of 250."""
    return timestamp + max(0, time.monotonic_ns() - since_ns)


@dataclass
class WrittenPage:
    """A page's TigerBeetle half, done (`written`) or given up: what its registry half
    needs, and the wallets TigerBeetle refused."""

    written: bool = False
    usable: list[WalletSnapshot] = field(default_factory=list)
    chain_of: dict[WalletKey, tuple[int, int]] = field(default_factory=dict)
    account_ids: dict[WalletKey, int] = field(default_factory=dict)
    results: list[CreateTransferResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    holds: CarriedHolds = field(default_factory=CarriedHolds)


@dataclass
class PageEvents:
    """A page's accounts and opening pairs, built before its TigerBeetle half runs (on the
    caller's thread, while the TigerBeetle thread waits on the cluster for the page before):
    everything but the imported timestamps, which each attempt gives them."""

    todo: list[WalletSnapshot]  # oldest wallet first: the order of their timestamps
    created_ns: list[int]  # each wallet's creation time, Unix ns
    ledgers: list[int]
    system_ids: dict[int, int]  # ledger -> its system account id, hashed once a page
    accounts: list[Account]  # one per wallet, in `todo` order
    transfers: list[Transfer]  # the opening pairs, linked, in `todo` order
    chain_of: dict[WalletKey, tuple[int, int]]  # key -> (first transfer, how many)
    account_ids: dict[WalletKey, int]
    holds: CarriedHolds  # open at the snapshots: placed once the opening pairs are in


class PageImport:
    """Writes pages' TigerBeetle halves, one after another, for one backfill run."""

    def __init__(self, tigerbeetle: LedgerBatches, holds: HoldImport) -> None:
        self.tigerbeetle = tigerbeetle
        self._holds = holds
        # The last timestamp this run gave an imported event. The next page continues from
        # it instead of asking the cluster again (a query_accounts over every account took
        # 0.2-0.6 s a page on the real server); a live write in between makes TigerBeetle
        # refuse the page as regressing, and the retry asks the cluster.
        self._clock: int | None = None
        self._clock_read_ns = 0  # time.monotonic_ns() when _clock was learnt
        self._system_accounts: set[int] = set()  # system account ids known to exist
        self._alone = False  # this run holds the share fence (`_mirror_paused`)

    def write(self, events: PageEvents) -> WrittenPage:
        """The TigerBeetle half of a page, tried again while live writes race past the
        chosen timestamps: with the mirror paused (`_mirror_paused`) after UNPAUSED_ATTEMPTS
        races. Touches neither the registry nor the report."""
        with ExitStack() as paused:
            for attempt in range(REGRESS_RETRIES):
                if attempt == UNPAUSED_ATTEMPTS:
                    paused.enter_context(self._mirror_paused())
                written = self._attempt(events)
                if written is not None:
                    return written
                time.sleep(_regress_pause_s(attempt))
        return WrittenPage(
            failed=[s.balance.key.describe() + ": timestamps kept regressing" for s in events.todo]
        )

    @contextmanager
    def _mirror_paused(self) -> Iterator[None]:
        """The share fence held exclusively for a page's last attempts
        (`flags.write_lock.mirror_runs_paused`): no mirror run sends meanwhile, so an attempt
        stamped past the cluster's answer to the last one wins. At a million wallets one
        page lost all 20 attempts while a mirror sweep sent batch after batch. Past
        MIRROR_PAUSE_WAIT_S the attempts go beside the mirror, as before; inside a held
        fence (the transfers' retry within a page's) nothing more is taken."""
        if self._alone:
            yield
            return
        with mirror_runs_paused(MIRROR_PAUSE_WAIT_S) as alone:
            if not alone:
                log.warning(
                    "backfill: mirror runs kept sending for %g s; the page tries beside them",
                    MIRROR_PAUSE_WAIT_S,
                )
            self._alone = True
            try:
                yield
            finally:
                self._alone = False

    def _create_transfers(self, transfers: list[Transfer]) -> list[CreateTransferResult] | None:
        """The page's opening pairs, once its accounts are in; None when TigerBeetle kept
        refusing their timestamps as regressing.

        A live write (the mirror's, the API's) that lands while the accounts go takes a
        later timestamp than the pairs were given, and TigerBeetle refuses them all. They
        are stamped again past everything the cluster holds now (its accounts and live
        writes), in the same order, and only they are sent again (the mirror paused after
        UNPAUSED_ATTEMPTS races, as the page's attempts are): going back to the
        accounts reopened the same window, and under steady writes every attempt of a page
        lost the race (issue 25: "timestamps kept regressing" for a whole run). The refused
        results carry the cluster's own timestamps at that send, later than everything it
        held then: the new stamps follow them, with no query of the cluster's latest event
        (0.2-0.6 s on the real server, a window of its own)."""
        results = self.tigerbeetle.create_transfers(transfers)
        answered_ns = time.monotonic_ns()
        with ExitStack() as paused:
            for attempt in range(1, REGRESS_RETRIES):
                if not any(r.status in _RETRY for r in results):
                    return results
                _log_refused("opening transfers", results)
                time.sleep(_regress_pause_s(attempt))  # the cluster's clock moves past the stamps
                if attempt == UNPAUSED_ATTEMPTS:
                    paused.enter_context(self._mirror_paused())
                floor = max(max(r.timestamp for r in results), transfers[-1].timestamp)
                floor = _moved_on(floor, since_ns=answered_ns)
                for offset, transfer in enumerate(transfers, start=1):
                    transfer.timestamp = floor + offset
                results = self.tigerbeetle.create_transfers(transfers)
                answered_ns = time.monotonic_ns()
        return None if any(r.status in _RETRY for r in results) else results

    def _attempt(self, events: PageEvents) -> WrittenPage | None:
        """One attempt at a page: its events timestamped from the cluster's clock (or where
        this run's last page left it), then created. None when a live write raced past the
        chosen timestamps (TigerBeetle refused them as regressing) and the page must be
        tried again."""
        clock = (
            _moved_on(self._clock, since_ns=self._clock_read_ns)
            if self._clock is not None
            else self.tigerbeetle.latest_timestamp()
        )
        self._clock = None  # until this page is in (or its accounts regressed past a clock)
        system_ids = events.system_ids
        unknown = [id_ for id_ in system_ids.values() if id_ not in self._system_accounts]
        if unknown:  # an account, once there, stays: each ledger's is looked up until found
            self._system_accounts.update(a.id for a in self.tigerbeetle.lookup_accounts(unknown))
        system_accounts: list[Account] = []
        for ledger in events.ledgers:  # before the page's first wallet
            if system_ids[ledger] not in self._system_accounts:
                clock = max(clock + 1, events.created_ns[0] - 1)
                system_accounts.append(
                    imported_system_account(ledger, scope=self.tigerbeetle.scope, timestamp=clock)
                )
        transfers, chain_of = events.transfers, events.chain_of
        for snapshot, account, created_ns in zip(
            events.todo, events.accounts, events.created_ns, strict=True
        ):
            start, size = chain_of[snapshot.balance.key]
            pair = transfers[start : start + size]
            clock = stamp_import(account, pair, timestamp=max(clock + 1, created_ns))
        created = self._create_page(
            events.todo,
            system_accounts=system_accounts,
            accounts=events.accounts,
            transfers=transfers,
        )
        if created is None:
            return None
        usable, results, failed = created
        # After the imported events: ordinary pending transfers, which the cluster stamps
        # later than them (never an imported pending transfer: docs/holds.md).
        self._holds.place(
            events.holds,
            account_ids=events.account_ids,
            imported=_opened(usable, chain_of=chain_of, results=results),
        )
        last = transfers[-1].timestamp if transfers else clock
        self._learn_clock(max(clock, last, events.holds.latest_timestamp()))
        return WrittenPage(
            written=True,
            usable=usable,
            chain_of=chain_of,
            account_ids=events.account_ids,
            results=results,
            failed=failed,
            holds=events.holds,
        )

    def _create_page(
        self,
        todo: list[WalletSnapshot],
        *,
        system_accounts: list[Account],
        accounts: list[Account],
        transfers: list[Transfer],
    ) -> tuple[list[WalletSnapshot], list[CreateTransferResult], list[str]] | None:
        """Create the page's accounts, then its opening pairs (each a linked chain): the
        snapshots whose account is there, the transfers' results and the wallets refused, or
        None when TigerBeetle refused a timestamp as regressing (the page is tried again)."""
        # Accounts first: transfers must postdate both their accounts.
        if system_accounts and self._regressed(self.tigerbeetle.create_accounts(system_accounts)):
            return None
        account_results = self.tigerbeetle.create_accounts(accounts)
        if self._regressed(account_results):
            return None
        usable, failed = [], []
        for snapshot, result in zip(todo, account_results, strict=True):
            if result.status in _ACCEPTED_ACCOUNT:
                usable.append(snapshot)
            else:
                failed.append(f"{snapshot.balance.key.describe()}: {result.status.name}")
        results = self._create_transfers(transfers) if transfers else []
        if results is None:
            return None
        return usable, results, failed

    def _regressed(self, results: list[CreateAccountResult]) -> bool:
        """Whether TigerBeetle refused imported accounts' timestamps; if so the next attempt
        stamps the page past the cluster's own timestamps of this send (later than all it
        held then), not past a fresh query of its latest event: that query's round trip is
        a window of its own, and a live account landing in it on every attempt failed the
        page (at a million wallets and 100 writes/s, 8,000 "kept regressing")."""
        if not any(r.status in _RETRY for r in results):
            return False
        _log_refused("accounts", results)
        self._learn_clock(max(r.timestamp for r in results))
        return True

    def _learn_clock(self, timestamp: int) -> None:
        self._clock, self._clock_read_ns = timestamp, time.monotonic_ns()


def _opened(
    usable: list[WalletSnapshot],
    *,
    chain_of: dict[WalletKey, tuple[int, int]],
    results: list[CreateTransferResult],
) -> set[WalletKey]:
    """The wallets whose opening pair this attempt created (the others an earlier run did:
    their holds wait for the registry half, which learns at which seq)."""
    opened = set()
    for snapshot in usable:
        start, size = chain_of[snapshot.balance.key]
        if all(
            results[i].status == CreateTransferStatus.CREATED for i in range(start, start + size)
        ):
            opened.add(snapshot.balance.key)
    return opened
