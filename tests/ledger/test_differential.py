"""The embedded engine answers exactly as the real TigerBeetle server.

The same seeded random batches go to both (tests/ledger/differential.py draws them: every
account and transfer flag, linked chains, imported events, pending/post/void, balancing,
closing, duplicate ids, bad fields, overflows). After every batch the two must agree on
each result code, every account (balances and flags), the transfers the batch touched, and
random get_account_transfers / get_account_balances / query_accounts / query_transfers
filters; timestamps are compared by which object holds them. A last phase lets pending
transfers time out on both.

Needs a real cluster (TB_ADDRESSES); imported events are sent only while no other client
writes to it. DIFF_SEED replays a run, DIFF_BATCHES sizes it.
"""

from __future__ import annotations

import os
import random
import time
from bisect import insort
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from ledger.engine.backend import EngineBackend
from ledger.tb_model import latest_event_filter
from tests.conftest import make_backend
from tests.ledger.differential import AF, LONG_TIMEOUT_S, TF, Scenario, Side

BATCHES = int(os.environ.get("DIFF_BATCHES", "300"))
FULL_CHECK_EVERY = 25  # batches between lookups of every transfer (each batch checks its own)
EXPIRY_TIMEOUT_S = 1
EXPIRY_WAIT_S = 2.5  # past the timeout, and past the server's next expiry pulse


class Divergence(AssertionError):
    pass


class Run:
    """One differential run: both sides, the scenario, and the comparisons."""

    def __init__(self, seed: int, *, engine: Side, server: Side) -> None:
        self.seed = seed
        self.scenario = Scenario(seed)
        self.engine = engine
        self.server = server
        self.sides = (server, engine)  # the server first: nearest the quiet-cluster check
        self.batch_number = 0
        self.events_sent = 0
        self.statuses: Counter[str] = Counter()  # the server's result codes, reported

    # --- comparison ----------------------------------------------------------------------

    def same(self, what: str, call: Any, *, detail: Any = None, results: bool = False) -> Any:
        """`call(side)` on both sides; their normalised answers must be equal. Returns the
        server's raw answer."""
        answers = {side.name: call(side) for side in self.sides}
        shown = {
            side.name: side.normalise_results(answers[side.name], detail)
            if results
            else side.normalise(answers[side.name])
            for side in self.sides
        }
        if shown["engine"] != shown["server"]:
            raise Divergence(self.describe(what, shown, detail))
        return answers["server"]

    def describe(self, what: str, shown: dict[str, Any], detail: Any) -> str:
        lines = [f"DIFF_SEED={self.seed} batch {self.batch_number}: {what} differs"]
        engine, server = shown["engine"], shown["server"]
        if isinstance(engine, list) and isinstance(server, list):
            lines.append(f"  lengths engine={len(engine)} server={len(server)}")
            for index in range(max(len(engine), len(server))):
                left = engine[index] if index < len(engine) else None
                right = server[index] if index < len(server) else None
                if left != right:
                    lines += [f"  [{index}] engine: {left}", f"  [{index}] server: {right}"]
        else:
            lines += [f"  engine: {engine}", f"  server: {server}"]
        if detail is not None:
            lines.append(f"  request: {detail}")
        return "\n".join(lines)

    # --- writes --------------------------------------------------------------------------

    def create_accounts(self, events: list[dict[str, Any]]) -> list[Any]:
        results = {
            side.name: side.backend.create_accounts([side.account(e) for e in events])
            for side in self.sides
        }
        return self.settle("create_accounts", kind="account", events=events, results=results)

    def create_transfers(self, events: list[dict[str, Any]]) -> list[Any]:
        results = {
            side.name: side.backend.create_transfers([side.transfer(e) for e in events])
            for side in self.sides
        }
        return self.settle("create_transfers", kind="transfer", events=events, results=results)

    def settle(
        self,
        operation: str,
        *,
        kind: str,
        events: list[dict[str, Any]],
        results: dict[str, list[Any]],
    ) -> list[Any]:
        """Learn the new objects' timestamps, compare the results, update the model."""
        self.batch_number += 1
        self.events_sent += len(events)
        for side in self.sides:
            for event, result in zip(events, results[side.name], strict=True):
                if result.status.name == "CREATED":
                    side.learn((kind, event["id"]), result.timestamp)
        self.same(operation, lambda side: results[side.name], detail=events, results=True)
        model = self.scenario.model
        ids = model.account_ids if kind == "account" else model.transfer_ids
        submitted = model.submitted_accounts if kind == "account" else model.submitted_transfers
        for event, result in zip(events, results["server"], strict=True):
            self.statuses[f"{kind}:{result.status.name}"] += 1
            ids.setdefault(event["id"])
            if result.status.name == "CREATED":
                submitted[event["id"]] = event
                insort(
                    model.order,
                    (kind, event["id"]),
                    key=lambda label: self.server.timestamp_of[label],
                )
            elif kind == "transfer" and result.status.name in TRANSIENT:
                model.failed_transfer_ids.append(event["id"])
        return results["server"]

    # --- reads ---------------------------------------------------------------------------

    def check_accounts(self) -> None:
        ids = [*self.scenario.model.account_ids, self.scenario.missing_id()]
        ids.append(self.scenario.rng.choice(ids))  # a repeated id answers twice
        found = self.same("lookup_accounts", lambda side: side.backend.lookup_accounts(ids))
        self.scenario.model.accounts = {a.id: a for a in found}

    def check_transfers(self, ids: list[int]) -> None:
        found = self.same("lookup_transfers", lambda side: side.backend.lookup_transfers(ids))
        self.scenario.model.transfers.update({t.id: t for t in found})

    def check_filters(self, account_ids: list[int]) -> None:
        scenario = self.scenario
        for account_id in account_ids:
            fields = scenario.account_filter(account_id)
            self.same(
                "get_account_transfers",
                lambda side, fields=fields: side.backend.get_account_transfers(
                    side.account_filter(fields)
                ),
                detail=fields,
            )
            fields = scenario.account_filter(account_id)
            self.same(
                "get_account_balances",
                lambda side, fields=fields: side.backend.get_account_balances(
                    side.account_filter(fields)
                ),
                detail=fields,
            )
        fields = scenario.query_filter()
        self.same(
            "query_accounts",
            lambda side: side.backend.query_accounts(side.query_filter(fields)),
            detail=fields,
        )
        fields = scenario.query_filter()
        self.same(
            "query_transfers",
            lambda side: side.backend.query_transfers(side.query_filter(fields)),
            detail=fields,
        )

    def check_after(self, events: list[dict[str, Any]], kind: str) -> None:
        self.check_accounts()
        scenario = self.scenario
        touched: list[int] = []
        if kind == "transfer":
            ids = {e["id"] for e in events} | {e["pending_id"] for e in events if e["pending_id"]}
            if self.batch_number % FULL_CHECK_EVERY == 0:
                ids |= set(scenario.model.transfer_ids)
            self.check_transfers(sorted(ids))
            touched = [e[f] for e in events for f in ("debit_account_id", "credit_account_id")]
        known = [i for i in touched if i in scenario.model.accounts]
        pool = known or list(scenario.model.accounts) or [scenario.missing_id()]
        self.check_filters([scenario.rng.choice(pool), scenario.rng.choice(pool)])

    # --- phases --------------------------------------------------------------------------

    def random_batches(self, count: int) -> None:
        scenario = self.scenario
        for number in range(count):
            imports = self.cluster_is_quiet()
            if number < 3 or len(scenario.model.accounts) < 4 or scenario.chance(0.25):
                events = scenario.account_batch(imports=imports)
                self.create_accounts(events)
                self.check_after(events, "account")
            else:
                events = scenario.transfer_batch(imports=imports)
                self.create_transfers(events)
                self.check_after(events, "transfer")

    def cluster_is_quiet(self) -> bool:
        """Whether the server's newest account and transfer are this test's: imported
        timestamps are drawn near this test's objects, so they mean the same on both sides
        only while no other client writes to the cluster."""
        newest = latest_event_filter()
        backend = self.server.backend
        return all(
            found.timestamp in self.server.label_of
            for found in [*backend.query_accounts(newest), *backend.query_transfers(newest)]
        )

    def pending_event(
        self, debit: int, *, credit: int, amount: int, flags: int = 0, timeout: int = 0
    ) -> dict:
        """A pending transfer between two of the scenario's accounts, as an event."""
        return {
            "id": self.scenario.new_id(),
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount": amount,
            "pending_id": 0,
            "timeout": timeout,
            "ledger": 1,
            "code": 1,
            "flags": TF.PENDING | flags,
            "timestamp": 0,
            **self.scenario.user_data(),
        }

    def expiry(self) -> None:
        """Pending transfers that time out: both release them, reopen what a timed-out
        closing transfer closed, and refuse to post or void them."""
        scenario = self.scenario
        accounts = [
            {
                "id": scenario.new_id(),
                "ledger": 1,
                "code": 1,
                "flags": AF.HISTORY if index % 2 == 0 else 0,
                "timestamp": 0,
                **scenario.user_data(),
            }
            for index in range(4)
        ]
        self.create_accounts(accounts)
        a, b, c, d = (e["id"] for e in accounts)

        pending = self.pending_event
        closing = TF.CLOSING_DEBIT | TF.CLOSING_CREDIT
        expiring = [
            pending(a, credit=b, amount=5, timeout=EXPIRY_TIMEOUT_S),
            pending(b, credit=c, amount=7, timeout=EXPIRY_TIMEOUT_S),
            pending(c, credit=d, amount=3, flags=closing, timeout=EXPIRY_TIMEOUT_S),
            pending(a, credit=b, amount=11, timeout=LONG_TIMEOUT_S),
        ]
        # Only the results: reads just before the timeout could race the server's expiry.
        self.create_transfers(expiring)
        time.sleep(EXPIRY_WAIT_S)
        self.check_accounts()  # reads before any write: both show the amounts released

        def resolve(pending_event: dict, *, flags: int, amount: int) -> dict:
            return {
                **pending(0, credit=0, amount=amount),
                "ledger": 0,
                "code": 0,
                "flags": flags,
                "pending_id": pending_event["id"],
            }

        settle = [
            resolve(expiring[0], flags=TF.POST_PENDING_TRANSFER, amount=2**128 - 1),
            resolve(expiring[1], flags=TF.VOID_PENDING_TRANSFER, amount=0),
            pending(c, credit=d, amount=1) | {"flags": 0},
            resolve(expiring[3], flags=TF.POST_PENDING_TRANSFER, amount=4),
        ]
        settled = self.create_transfers(settle)
        assert [r.status.name for r in settled] == [
            "PENDING_TRANSFER_EXPIRED",
            "PENDING_TRANSFER_EXPIRED",
            "CREATED",  # the timed-out closing transfer reopened both accounts
            "CREATED",
        ], f"DIFF_SEED={self.seed}: the server did not expire as expected: {settled}"
        self.check_after(settle + expiring, "transfer")
        self.check_filters([a, b, c, d])


TRANSIENT = frozenset(
    {
        "DEBIT_ACCOUNT_NOT_FOUND",
        "CREDIT_ACCOUNT_NOT_FOUND",
        "PENDING_TRANSFER_NOT_FOUND",
        "EXCEEDS_CREDITS",
        "EXCEEDS_DEBITS",
        "DEBIT_ACCOUNT_ALREADY_CLOSED",
        "CREDIT_ACCOUNT_ALREADY_CLOSED",
    }
)


@pytest.mark.slow
def test_the_engine_answers_every_random_batch_as_the_real_server_does(
    db: None, record_property: Callable[[str, object], None]
) -> None:
    # The process's one client (skips without TB_ADDRESSES); the session closes it.
    server_backend = make_backend("tigerbeetle")
    seed = int(os.environ.get("DIFF_SEED") or random.SystemRandom().randrange(2**32))
    run = Run(seed, engine=Side("engine", EngineBackend()), server=Side("server", server_backend))
    started = time.monotonic()
    run.random_batches(BATCHES)
    run.expiry()
    elapsed_s = time.monotonic() - started
    record_property("seed", seed)
    record_property("events_sent", run.events_sent)
    record_property("elapsed_s", round(elapsed_s, 1))
    record_property("server_results", dict(run.statuses))
    assert run.events_sent > 2_000, (seed, run.events_sent, elapsed_s)
