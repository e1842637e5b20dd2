"""Random batches for the differential test: the embedded engine against the real server.

`Scenario` draws create_accounts / create_transfers batches and read filters from a seeded
`random.Random`, steered by what the cluster holds so far (it learns from the server's
answers). Events are built per side (`Side.account` / `Side.transfer`) because the only
values that differ between the two ledgers are timestamps: an imported event's timestamp and
a filter's timestamp bound are written as (object label, offset) and resolved against each
side's own timestamp of that object. Answers are compared after `Side.normalise`, which
replaces every timestamp by the label of the object that holds it.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import tigerbeetle as tb

from ledger.backends.base import LedgerBackend

# Flags as plain ints: tigerbeetle.AccountFlags/TransferFlags drop unknown bits in any
# operation, and the scenario sends reserved bits on purpose.
AF = SimpleNamespace(**{flag.name: int(flag) for flag in tb.AccountFlags})
TF = SimpleNamespace(**{flag.name: int(flag) for flag in tb.TransferFlags})
U128_MAX = 2**128 - 1
U64_MAX = 2**64 - 1
HUGE = 2**127
LEDGERS = (1, 1, 2)
WHALE_LEDGER = 3  # accounts on it move amounts near 2^127: the overflow checks
LONG_TIMEOUT_S = 86_400  # pending transfers that never expire during the test
TIMESTAMP_LIMIT = 2**63
FIELD_MAX = {
    "debit_account_id": U128_MAX,
    "credit_account_id": U128_MAX,
    "ledger": 2**32 - 1,
    "code": 2**16 - 1,
}

Label = tuple[str, int]  # ("account" | "transfer", id)
Symbolic = tuple[Label, int]  # a timestamp: (the object whose timestamp it is near, offset)


class Side:
    """One ledger under test and the map between its timestamps and object labels."""

    def __init__(self, name: str, backend: LedgerBackend) -> None:
        self.name = name
        self.backend = backend
        self.label_of: dict[int, Label] = {}
        self.timestamp_of: dict[Label, int] = {}

    def learn(self, label: Label, timestamp: int) -> None:
        self.label_of[timestamp] = label
        self.timestamp_of[label] = timestamp

    def resolve(self, timestamp: int | Symbolic) -> int:
        if isinstance(timestamp, int):
            return timestamp
        label, offset = timestamp
        return self.timestamp_of[label] + offset

    def account(self, fields: dict[str, Any]) -> tb.Account:
        return tb.Account(**{**fields, "timestamp": self.resolve(fields["timestamp"])})

    def transfer(self, fields: dict[str, Any]) -> tb.Transfer:
        return tb.Transfer(**{**fields, "timestamp": self.resolve(fields["timestamp"])})

    def account_filter(self, fields: dict[str, Any]) -> tb.AccountFilter:
        return tb.AccountFilter(**{**fields, **self._bounds(fields)})

    def query_filter(self, fields: dict[str, Any]) -> tb.QueryFilter:
        return tb.QueryFilter(**{**fields, **self._bounds(fields)})

    def _bounds(self, fields: dict[str, Any]) -> dict[str, int]:
        return {
            name: max(0, self.resolve(fields[name])) for name in ("timestamp_min", "timestamp_max")
        }

    def label(self, timestamp: int) -> Any:
        return self.label_of.get(timestamp, ("unknown", timestamp))

    def normalise(self, value: Any) -> Any:
        """A comparable form: dataclasses as tuples, timestamps as labels."""
        if isinstance(value, list):
            return [self.normalise(v) for v in value]
        if dataclasses.is_dataclass(value):
            return tuple(
                (f.name, self.label(getattr(value, f.name)))
                if f.name == "timestamp"
                else (f.name, int(getattr(value, f.name)))
                for f in dataclasses.fields(value)
            )
        return value

    def normalise_results(
        self, results: Sequence[Any], events: Sequence[dict[str, Any]]
    ) -> list[tuple[str, Any]]:
        """Status names, and timestamps as what holds them: a known object, or an event of
        this batch (a refused event answers its own timestamp in the batch, consecutive from
        the batch's first; an event rolled back with its chain, or an `exists` naming it,
        carries the timestamp that event was created with)."""
        own = {self.resolve(e["timestamp"]): i for i, e in enumerate(events) if e["timestamp"]}
        offsets = Counter(
            r.timestamp - i
            for i, r in enumerate(results)
            if r.status.name not in _OK and r.timestamp not in own
        )
        base = offsets.most_common(1)[0][0] if offsets else None
        shown: list[tuple[str, Any]] = []
        for index, result in enumerate(results):
            timestamp = result.timestamp
            if timestamp in self.label_of:
                held_by: Any = self.label_of[timestamp]
            elif base is not None and timestamp - base == index:
                held_by = "event timestamp"
            elif timestamp in own:
                held_by = ("imported timestamp of event", own[timestamp])
            elif base is not None and 0 <= timestamp - base < len(results):
                held_by = ("event timestamp of event", timestamp - base)
            else:
                held_by = ("odd timestamp", timestamp)
            shown.append((result.status.name, held_by))
        return shown


_OK = ("CREATED", "EXISTS")


@dataclasses.dataclass
class Model:
    """What the server holds, learned from its answers."""

    accounts: dict[int, tb.Account] = dataclasses.field(default_factory=dict)
    submitted_accounts: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    transfers: dict[int, tb.Transfer] = dataclasses.field(default_factory=dict)
    submitted_transfers: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    failed_transfer_ids: list[int] = dataclasses.field(default_factory=list)
    account_ids: dict[int, None] = dataclasses.field(default_factory=dict)  # ordered set
    transfer_ids: dict[int, None] = dataclasses.field(default_factory=dict)
    order: list[Label] = dataclasses.field(default_factory=list)  # by server timestamp

    def pending_ids(self) -> list[int]:
        return [i for i, t in self.transfers.items() if t.flags & TF.PENDING]


class Draws:
    """The seeded state every draw shares (the random source, this run's ids and tag, the
    model of what the server holds) and the draws the others build on: ids, user data,
    imported timestamps, linked chains, resubmissions."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        # Fresh on every run, even a replayed seed's: the server keeps what earlier runs made.
        fresh = random.SystemRandom()
        self.id_base = fresh.randrange(2**100, 2**127)
        self.tag = fresh.randrange(2**100, 2**127)  # user_data_128 of everything here
        self.next_offset = 1
        self.model = Model()

    def new_id(self) -> int:
        self.next_offset += 1
        return self.id_base + self.next_offset

    def missing_id(self) -> int:
        return self.id_base + 2**90 + self.rng.randrange(1000)

    def user_data(self) -> dict[str, int]:
        return {
            "user_data_128": self.tag + self.rng.randrange(3),
            "user_data_64": self.rng.randrange(4),
            "user_data_32": self.rng.randrange(4),
        }

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def latest(self, kind: str | None = None) -> Label | None:
        for label in reversed(self.model.order):
            if kind is None or label[0] == kind:
                return label
        return None

    def imported_timestamps(self, count: int) -> list[int | Symbolic]:
        """Past timestamps near existing objects: mostly increasing after the newest one,
        sometimes regressing, colliding, or out of range."""
        anchor = self.latest()
        if anchor is None:
            return [0] * count
        roll = self.rng.random()
        if roll < 0.15:
            anchor = self.latest("transfer") or anchor
        elif roll < 0.3:
            anchor = self.latest("account") or anchor
        elif roll < 0.4:
            anchor = self.rng.choice(self.model.order)
        offset = self.rng.choice([1, 1, 1, 2, 3, 0, -1])
        stamps: list[int | Symbolic] = []
        for _ in range(count):
            roll = self.rng.random()
            if roll < 0.02:
                stamps.append(self.rng.choice([0, TIMESTAMP_LIMIT, U64_MAX, 2**62]))
                continue
            stamps.append((anchor, offset))
            offset += self.rng.choice([1, 1, 1, 2, 5, 0, -1]) if roll < 0.15 else 1
        return stamps

    def link(self, events: list[dict[str, Any]], flag: int) -> None:
        """Random linked chains; now and then the batch ends inside an open chain."""
        for index, event in enumerate(events):
            event["flags"] &= ~flag
            last = index == len(events) - 1
            if self.chance(0.04 if last else 0.25):
                event["flags"] |= flag

    def any_account_id(self) -> int:
        if not self.model.accounts or self.chance(0.03):
            return self.missing_id()
        return self.rng.choice(list(self.model.accounts))

    def mutated(self, original: dict[str, Any]) -> dict[str, Any]:
        """A resubmission: the same event, or the same id with one field changed."""
        event = dict(original)
        if self.chance(0.4):
            return event
        field = self.rng.choice(
            ["user_data_128", "user_data_64", "user_data_32", "ledger", "code", "flags"]
            + (
                ["amount", "debit_account_id", "credit_account_id", "pending_id", "timeout"]
                if "amount" in event
                else []
            )
        )
        if field == "flags":
            toggles = [1, 16, 32] if "amount" in event else [1, 8, 2, 32]
            event["flags"] ^= self.rng.choice(toggles)
        elif field == "amount":
            event["amount"] = self.rng.choice(
                [min(U128_MAX, event["amount"] + 1), max(0, event["amount"] - 1), U128_MAX, 0]
            )
        elif field == "timeout":  # never a short one: expiry is compared in its own phase
            event["timeout"] = self.rng.choice([0, LONG_TIMEOUT_S + 7])
        elif field in ("debit_account_id", "credit_account_id"):
            event[field] = self.rng.choice([0, self.any_account_id()])
        else:
            event[field] = self.rng.choice([0, min(event[field] + 1, 3), 1])
        return event


class AccountDraws(Draws):
    """create_accounts batches: new accounts, resubmissions, broken fields, imported ones."""

    def account_batch(self, *, imports: bool = True) -> list[dict[str, Any]]:
        events = [self.account_event() for _ in range(self.rng.randint(1, 10))]
        if self.chance(0.1):  # the same id twice in one batch
            events.insert(
                self.rng.randrange(len(events) + 1), self.mutated(self.rng.choice(events))
            )
        self.link(events, AF.LINKED)
        count = len(events)
        if self.chance(0.12) and imports and self.model.order:
            for event, stamp in zip(events, self.imported_timestamps(count), strict=True):
                event["flags"] |= AF.IMPORTED
                event["timestamp"] = stamp
            if self.chance(0.1):
                events[self.rng.randrange(count)]["flags"] &= ~AF.IMPORTED
        elif self.chance(0.03):
            events[self.rng.randrange(count)]["flags"] |= AF.IMPORTED
            events[-1]["timestamp"] = self.rng.choice([0, 1])
        return events

    def account_event(self) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.15 and self.model.submitted_accounts:
            return self.mutated(self.rng.choice(list(self.model.submitted_accounts.values())))
        flags = 0
        limit_roll = self.rng.random()
        if limit_roll < 0.3:
            flags |= AF.DEBITS_MUST_NOT_EXCEED_CREDITS
        elif limit_roll < 0.5:
            flags |= AF.CREDITS_MUST_NOT_EXCEED_DEBITS
        if self.chance(0.35):
            flags |= AF.HISTORY
        if self.chance(0.02):
            flags |= AF.CLOSED
        event: dict[str, Any] = {
            "id": self.new_id(),
            "ledger": self.rng.choice(LEDGERS),
            "code": self.rng.randint(1, 3),
            "flags": flags,
            "timestamp": 0,
            **self.user_data(),
        }
        if roll < 0.25:
            self.break_account(event)
        elif roll < 0.33:
            event["ledger"] = WHALE_LEDGER
            event["flags"] &= AF.HISTORY
        return event

    def break_account(self, event: dict[str, Any]) -> None:
        field, value = self.rng.choice(
            [
                ("id", 0),
                ("id", U128_MAX),
                ("flags", event["flags"] | 1 << self.rng.randint(6, 15)),
                ("debits_pending", 1),
                ("debits_posted", 2),
                ("credits_pending", 3),
                ("credits_posted", 4),
                ("ledger", 0),
                ("code", 0),
                (
                    "flags",
                    event["flags"]
                    | AF.DEBITS_MUST_NOT_EXCEED_CREDITS
                    | AF.CREDITS_MUST_NOT_EXCEED_DEBITS,
                ),
                ("timestamp", 7),
            ]
        )
        event[field] = value


class TransferDraws(Draws):
    """create_transfers batches: single-phase and pending transfers, posts and voids (of
    earlier batches' and of the same batch's), balancing and closing flags, the wallet
    store's limit chains, resubmissions, broken fields, imported ones."""

    def account_pair(self) -> tuple[int, int, int]:
        """Debit id, credit id, ledger: mostly two open accounts on one ledger."""
        accounts = list(self.model.accounts.values())
        if self.chance(0.04) or len(accounts) < 2:
            return self.any_account_id(), self.any_account_id(), self.rng.choice(LEDGERS)
        debit = self.rng.choice(accounts)
        same = [a for a in accounts if a.ledger == debit.ledger and a.id != debit.id]
        if same and not self.chance(0.03):
            return debit.id, self.rng.choice(same).id, debit.ledger
        return debit.id, self.rng.choice(accounts).id, debit.ledger

    def amount(self, ledger: int) -> int:
        if ledger == WHALE_LEDGER:
            return self.rng.choice(
                [
                    HUGE - self.rng.randrange(9),
                    U128_MAX - self.rng.randrange(9),
                    self.rng.randrange(9),
                ]
            )
        roll = self.rng.random()
        if roll < 0.05:
            return 0
        if roll < 0.08:
            return U128_MAX
        return self.rng.randint(1, 40)

    def transfer_batch(self, *, imports: bool = True) -> list[dict[str, Any]]:
        events = [self.transfer_event() for _ in range(self.rng.randint(1, 30))]
        self.same_batch_follow_ups(events)
        self.link(events, TF.LINKED)
        if self.chance(0.2):
            events += self.limit_guarded_chain()
        if self.chance(0.2):
            events += self.limit_reservation_and_credit()
        count = len(events)
        if self.chance(0.1) and imports and self.model.order:
            for event, stamp in zip(events, self.imported_timestamps(count), strict=True):
                event["flags"] |= TF.IMPORTED
                event["timestamp"] = stamp
                if self.chance(0.85):
                    event["timeout"] = 0
            if self.chance(0.1):
                events[self.rng.randrange(count)]["flags"] &= ~TF.IMPORTED
            for event in events:
                if self.crashes_the_server(event):
                    event["flags"] &= ~TF.IMPORTED
        return events

    def limit_guarded_chain(self) -> list[dict[str, Any]]:
        """The balance-limit chain the wallet store posted before reservations: a
        transfer, a pending probe of U128_MAX - limit to its credit account, the probe's
        void, linked; the limit sits at the account's credits after the transfer, give or
        take a few units, so the probe overflows about half the time."""
        debit, credit, ledger = self.account_pair()
        probe_source = self.any_account_id()
        amount = self.amount(ledger)
        known = self.model.accounts.get(credit)
        credits = known.credits_posted + known.credits_pending if known else 0
        limit = min(U128_MAX, max(0, credits + amount + self.rng.randint(-3, 3)))
        probe_id = self.new_id()
        common = {"timeout": 0, "ledger": ledger, "timestamp": 0, **self.user_data()}
        probe = {
            **common,
            "debit_account_id": probe_source,
            "credit_account_id": credit,
            "amount": U128_MAX - limit,
            "code": 5,
        }
        return [
            {
                **common,
                "id": self.new_id(),
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": amount,
                "pending_id": 0,
                "code": 1,
                "flags": TF.LINKED,
            },
            {**probe, "id": probe_id, "pending_id": 0, "flags": TF.LINKED | TF.PENDING},
            {
                **probe,
                "id": self.new_id(),
                "pending_id": probe_id,
                "flags": TF.VOID_PENDING_TRANSFER,
            },
        ]

    def limit_reservation_and_credit(self) -> list[dict[str, Any]]:
        """The wallet store's balance limit (ledger.tb_model.limit_reservation): a pending
        transfer of U128_MAX - limit to an account, never posted, then a plain transfer to
        it; the limit sits within a few units of its credits after the transfer, so the
        transfer overflows about half the time (the reservation too, on an account already
        past the limit)."""
        debit, credit, ledger = self.account_pair()
        amount = self.amount(ledger)
        known = self.model.accounts.get(credit)
        credits = known.credits_posted if known else 0
        limit = min(U128_MAX, max(0, credits + amount + self.rng.randint(-3, 3)))
        common = {"timeout": 0, "ledger": ledger, "timestamp": 0, "pending_id": 0}
        return [
            {
                **common,
                **self.user_data(),
                "id": self.new_id(),
                "debit_account_id": self.any_account_id(),
                "credit_account_id": credit,
                "amount": U128_MAX - limit,
                "code": 6,
                "flags": TF.PENDING,
            },
            {
                **common,
                **self.user_data(),
                "id": self.new_id(),
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": amount,
                "code": 1,
                "flags": 0,
            },
        ]

    def crashes_the_server(self, event: dict[str, Any]) -> bool:
        """TigerBeetle 0.17.9 asserts (the replica panics, and panics again replaying its
        journal) on an imported post/void of a pending transfer that has a timeout: that
        request has no answer to compare, so the scenario never sends it."""
        pending = self.model.transfers.get(event["pending_id"])
        return bool(
            event["flags"] & TF.IMPORTED
            and event["flags"] & (TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER)
            and pending is not None
            and pending.timeout != 0
        )

    def transfer_event(self) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.1 and self.model.submitted_transfers:
            return self.mutated(self.rng.choice(list(self.model.submitted_transfers.values())))
        if roll < 0.3 and self.model.pending_ids():
            event = self.post_or_void()
        else:
            event = self.single_or_pending()
        if roll > 0.97 and self.model.failed_transfer_ids:
            event["id"] = self.rng.choice(self.model.failed_transfer_ids)
        elif roll > 0.9:
            self.break_transfer(event)
        return event

    def single_or_pending(self) -> dict[str, Any]:
        debit, credit, ledger = self.account_pair()
        flags = 0
        timeout = 0
        roll = self.rng.random()
        if roll < 0.35:
            flags |= TF.PENDING
            if self.chance(0.3):
                timeout = LONG_TIMEOUT_S + self.rng.randrange(100)
        if self.chance(0.12):
            flags |= self.rng.choice(
                [TF.BALANCING_DEBIT, TF.BALANCING_CREDIT, TF.BALANCING_DEBIT | TF.BALANCING_CREDIT]
            )
        if self.chance(0.03):
            flags |= self.rng.choice([TF.CLOSING_DEBIT, TF.CLOSING_CREDIT])
            if self.chance(0.8):
                flags |= TF.PENDING
        return {
            "id": self.new_id(),
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount": self.amount(ledger),
            "pending_id": 0,
            "timeout": timeout,
            "ledger": ledger,
            "code": self.rng.randint(1, 3),
            "flags": flags,
            "timestamp": 0,
            **self.user_data(),
        }

    def same_batch_follow_ups(self, events: list[dict[str, Any]]) -> None:
        """Events that depend on earlier ones in the batch: a post/void of a pending transfer
        made a few events before, and the same id twice."""
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if event["flags"] & TF.PENDING and self.chance(0.3):
                pending = tb.Transfer(**{**event, "flags": TF.PENDING, "timestamp": 0})
                later = self.rng.randint(index + 1, len(events))
                events.insert(later, self.post_or_void(pending))
        if self.chance(0.1):
            copy = self.mutated(self.rng.choice(events))
            events.insert(self.rng.randrange(len(events) + 1), copy)

    def post_or_void(self, pending: tb.Transfer | None = None) -> dict[str, Any]:
        if pending is None:
            pending = self.model.transfers[self.rng.choice(self.model.pending_ids())]
        pending_id = pending.id
        roll = self.rng.random()
        if roll < 0.05 and self.model.transfers:
            pending_id = self.rng.choice(list(self.model.transfers))
        elif roll < 0.08:
            pending_id = self.missing_id()
        posting = self.chance(0.55)
        flags = TF.POST_PENDING_TRANSFER if posting else TF.VOID_PENDING_TRANSFER
        amount_choices = [
            0,
            pending.amount,
            min(U128_MAX, pending.amount + 1),
            max(0, pending.amount - 1),
        ]
        amount_choices += [U128_MAX, U128_MAX] if posting else [0, 0]
        event: dict[str, Any] = {
            "id": self.new_id(),
            "debit_account_id": 0,
            "credit_account_id": 0,
            "amount": self.rng.choice(amount_choices),
            "pending_id": pending_id,
            "timeout": 0,
            "ledger": 0,
            "code": 0,
            "flags": flags,
            "timestamp": 0,
            "user_data_128": 0,
            "user_data_64": 0,
            "user_data_32": 0,
        }
        for field in ("debit_account_id", "credit_account_id", "ledger", "code"):
            if self.chance(0.15):
                event[field] = getattr(pending, field)
            elif self.chance(0.04):
                event[field] = min(getattr(pending, field) + 1, FIELD_MAX[field])
        if self.chance(0.3):
            event.update(self.user_data())
        return event

    def break_transfer(self, event: dict[str, Any]) -> None:
        flags = event["flags"]
        field, value = self.rng.choice(
            [
                ("id", 0),
                ("id", U128_MAX),
                ("flags", flags | 1 << self.rng.randint(9, 15)),
                ("debit_account_id", self.rng.choice([0, U128_MAX, self.missing_id()])),
                ("credit_account_id", self.rng.choice([0, U128_MAX, self.missing_id()])),
                ("credit_account_id", event["debit_account_id"]),
                ("pending_id", self.rng.choice([1, U128_MAX, event["id"]])),
                ("timeout", LONG_TIMEOUT_S + self.rng.randrange(100)),
                ("ledger", self.rng.choice([0, 2, 99])),
                ("code", 0),
                ("flags", flags | TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER),
                (
                    "flags",
                    flags
                    | TF.PENDING
                    | self.rng.choice([TF.POST_PENDING_TRANSFER, TF.VOID_PENDING_TRANSFER]),
                ),
                ("flags", flags | self.rng.choice([TF.BALANCING_DEBIT, TF.CLOSING_CREDIT])),
                ("timestamp", 9),
                ("amount", U128_MAX),
            ]
        )
        event[field] = value


class FilterDraws(Draws):
    """Read filters: get_account_transfers / get_account_balances and query filters."""

    def timestamp_bound(self) -> int | Symbolic:
        roll = self.rng.random()
        if roll < 0.6 or not self.model.order:
            return 0
        if roll < 0.63:
            return self.rng.choice([TIMESTAMP_LIMIT, U64_MAX, TIMESTAMP_LIMIT - 1])
        return (self.rng.choice(self.model.order), self.rng.choice([-1, 0, 0, 1]))

    def account_filter(self, account_id: int) -> dict[str, Any]:
        flags = self.rng.choice(
            [AF_DEBITS, AF_CREDITS, AF_BOTH, AF_BOTH, AF_BOTH, 0, AF_REVERSED, 8]
        ) | (AF_REVERSED if self.chance(0.4) else 0)
        return {
            "account_id": account_id,
            "user_data_128": self.tag + self.rng.randrange(3) if self.chance(0.2) else 0,
            "user_data_64": self.rng.randrange(4) if self.chance(0.2) else 0,
            "user_data_32": self.rng.randrange(4) if self.chance(0.2) else 0,
            "code": self.rng.randint(1, 3) if self.chance(0.2) else 0,
            "timestamp_min": self.timestamp_bound(),
            "timestamp_max": self.timestamp_bound(),
            "limit": self.rng.choice([1, 2, 5, 8189, 8189, 0]),
            "flags": flags,
        }

    def query_filter(self) -> dict[str, Any]:
        """Scoped to this test's objects by user_data_128: the server holds others', and
        other clients may write while this test runs."""
        return {
            "user_data_128": self.tag + self.rng.randrange(3),
            "user_data_64": self.rng.randrange(4) if self.chance(0.3) else 0,
            "user_data_32": self.rng.randrange(4) if self.chance(0.3) else 0,
            "ledger": self.rng.choice([1, 2, 3]) if self.chance(0.3) else 0,
            "code": self.rng.randint(1, 3) if self.chance(0.3) else 0,
            "timestamp_min": self.timestamp_bound(),
            "timestamp_max": self.timestamp_bound(),
            "limit": self.rng.choice([1, 3, 10, 8189, 8189, 0]),
            "flags": self.rng.choice([0, 0, 1, 2]),
        }


class Scenario(AccountDraws, TransferDraws, FilterDraws):
    """Draws batches and filters; all randomness comes from one seed. Each kind of draw is
    a class of its own; they share one `Draws` state, so the calls on the one random source
    come in the order the test makes them."""


AF_DEBITS = int(tb.AccountFilterFlags.DEBITS)
AF_CREDITS = int(tb.AccountFilterFlags.CREDITS)
AF_BOTH = AF_DEBITS | AF_CREDITS
AF_REVERSED = int(tb.AccountFilterFlags.REVERSED)
