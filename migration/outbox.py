"""The mirror's view of the MongoDB transaction log: the durable outbox of dual write.

Every credit, debit and void is logged in the same MongoDB transaction as the balance it
changes, with `mirror_state: pending` (the store is given the states each kind of entry is
born with, `LOG_MARKS`); so a write MongoDB acknowledged is in the outbox even if the process
dies before it queues the mirror task. The mirror reads pending entries here in each wallet's
`wallet_seq` order and records what became of them. Every answer is typed: no log document
leaves this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection

from domain.ids import WalletKey
from flags.phases import client_bucket
from ledger.stores.mongo_database import WALLET_KEY_INDEX, MongoDatabase
from ledger.stores.mongo_documents import (
    MONGO_KEY_FIELDS,
    LogMarks,
    key_filter,
    key_of,
    of_wallets,
)
from ledger.stores.mongo_holds import HoldEventKind
from migration.legacy_scan import LegacyScan


class MirrorState:
    """Where a log entry stands with the TigerBeetle mirror (the outbox states). The values
    are stored in every log entry's `mirror_state`: never change one."""

    PENDING = "pending"  # to be applied to TigerBeetle by the mirror
    MIRRORED = "mirrored"  # applied to TigerBeetle
    COVERED = "covered"  # older than the backfill snapshot: in the opening balance
    PARKED = "parked"  # refused or kept failing: waits for support, blocks TB reads
    AWAITING_BACKFILL = "awaiting_backfill"  # a legacy wallet the backfill has not imported
    FROM_TIGERBEETLE = "from_tigerbeetle"  # a phase-4 write copied back: already in TB
    OUTSIDE_SHARE = "outside_share"  # its client is outside the dual-write share: waits for it
    NONE = "none"  # nothing to mirror (a refused debit)


# The states the MongoDB store writes into the entries it logs (the process wiring and the
# tests give them to it): a client's write waits for the mirror, a copied-back one is in
# TigerBeetle already, a refused debit has nothing to mirror.
LOG_MARKS = LogMarks(
    new_write=MirrorState.PENDING,
    copied_back=MirrorState.FROM_TIGERBEETLE,
    refused=MirrorState.NONE,
)
WAITING_STATES = (MirrorState.PENDING, MirrorState.PARKED, MirrorState.AWAITING_BACKFILL)
# What TigerBeetle does not hold yet: the waiting entries, and those of clients outside the
# dual-write share (read-your-writes and the shadow comparison ask for these).
UNMIRRORED_STATES = (*WAITING_STATES, MirrorState.OUTSIDE_SHARE)
# A log entry's `_id`: the client's id of a credit or debit, an ObjectId for a void (so
# internal entries never share the clients' id space).
EntryId = str | ObjectId


@dataclass(frozen=True)
class OutboxEntry:
    """One logged write still to be applied to TigerBeetle."""

    entry_id: EntryId
    kind: str  # credit, debit, void; a hold's event: hold, capture, release, expire
    key: WalletKey
    amount_minor: int
    wallet_seq: int
    created_at: datetime
    attempts: int = 0
    made_by: str = ""
    voided_transaction_id: str = ""
    voided_kind: str = ""
    voided_by: str = ""
    void_reason: str = ""
    hold_id: str = ""  # a hold event's hold
    timeout_s: int = 0  # a hold's (placed)
    expires_at: datetime | None = None  # a hold's (placed)

    @property
    def is_hold_event(self) -> bool:
        """A hold's event (ledger.stores.mongo_holds.HoldEventKind), not a transaction."""
        return self.kind in HoldEventKind.ALL

    @property
    def transaction_id(self) -> str:
        """A credit's or debit's id: its entry is keyed by the wallet transaction's own id."""
        assert isinstance(self.entry_id, str), f"{self.kind} entry {self.entry_id} has no string id"
        return self.entry_id


@dataclass(frozen=True)
class OutboxDepth:
    """Entries waiting for the mirror, by state, and the age of the oldest pending one."""

    pending: int
    parked: int
    awaiting_backfill: int
    oldest_pending_age_s: int
    # Entries of clients outside the dual-write share: not waiting for the mirror (the share
    # decides when they go to it), so not among `waiting()`.
    outside_share: int = 0

    def waiting(self) -> dict[str, int]:
        """The count of each waiting state, by state name (WAITING_STATES' order)."""
        return {
            MirrorState.PENDING: self.pending,
            MirrorState.PARKED: self.parked,
            MirrorState.AWAITING_BACKFILL: self.awaiting_backfill,
        }


@dataclass(frozen=True)
class WalletWaiting:
    """One wallet's entries waiting for the mirror, by state, and when its oldest pending
    entry was written (None without one)."""

    pending: int
    parked: int
    awaiting_backfill: int
    oldest_pending_at: datetime | None

    @property
    def any(self) -> bool:
        return bool(self.pending or self.parked or self.awaiting_backfill)


@dataclass(frozen=True)
class NextEntry:
    """A wallet's next logged change after a wallet_seq (what a shadow read compares at)."""

    entry_id: EntryId
    wallet_seq: int
    mirror_state: str | None  # None: an entry logged without one
    tb_timestamp: int | None  # TigerBeetle's timestamp of its transfer, once mirrored


@dataclass(frozen=True)
class ParkedEntry:
    """An entry the mirror gave up on, for support. Read leniently: a malformed entry is
    parked too."""

    entry_id: EntryId
    kind: str
    created_at: datetime | None
    mirror_error: str


@dataclass(frozen=True)
class CoveredTransaction:
    """A credit or debit an imported wallet's opening balance covers (its log entry)."""

    key: WalletKey
    transaction_id: str
    kind: str  # credit or debit
    amount_minor: int
    state: str
    created_at: datetime
    made_by: str = ""
    voided_by: str = ""
    void_reason: str = ""
    voided_at: datetime | None = None


def outbox_entry(document: dict[str, Any]) -> OutboxEntry:
    """A log document as the write it asks TigerBeetle for (KeyError, TypeError or
    ValueError when it is malformed)."""
    return OutboxEntry(
        entry_id=document["_id"],
        kind=document["kind"],
        key=key_of(document),
        amount_minor=int(document["amount_minor"]),
        wallet_seq=int(document["wallet_seq"]),
        created_at=document["created_at"],
        attempts=int(document.get("mirror_attempts", 0)),
        made_by=document.get("made_by", ""),
        voided_transaction_id=document.get("voided_transaction_id", ""),
        voided_kind=document.get("voided_kind", ""),
        voided_by=document.get("voided_by", ""),
        void_reason=document.get("void_reason", ""),
        hold_id=document.get("hold_id", ""),
        timeout_s=int(document.get("timeout_s", 0)),
        expires_at=document.get("expires_at"),
    )


def _covered(key: WalletKey, document: dict[str, Any]) -> CoveredTransaction:
    return CoveredTransaction(
        key=key,
        transaction_id=document["_id"],
        kind=document["kind"],
        amount_minor=int(document["amount_minor"]),
        state=document["state"],
        created_at=document["created_at"],
        made_by=document.get("made_by", ""),
        voided_by=document.get("voided_by", ""),
        void_reason=document.get("void_reason", ""),
        voided_at=document.get("voided_at"),
    )


# The states of a legacy wallet's entries the backfill releases once the wallet is imported
# (an entry of a client outside the share goes back to the mirror, which decides again).
_RELEASED_STATES = [
    MirrorState.AWAITING_BACKFILL,
    MirrorState.PENDING,
    MirrorState.OUTSIDE_SHARE,
]


@dataclass
class BackfilledEntries:
    """Log entries of wallets the backfill imported: the credits and debits their opening
    balances cover (`transactions`), and the ids of the waiting entries to mark `covered`
    (up to the opening seq) or to release to the mirror (`after`)."""

    transactions: list[CoveredTransaction] = field(default_factory=list)
    covered: list[EntryId] = field(default_factory=list)
    after: list[EntryId] = field(default_factory=list)


_EARLIEST = datetime.min.replace(tzinfo=UTC)  # a parked entry without its write time first


def _of_wallets(
    log: Collection[dict[str, Any]],
    query: dict[str, Any],
    keys: Sequence[WalletKey] | None,
    order: list[tuple[str, int]],
    limit: int,
) -> list[dict[str, Any]]:
    """The log entries `query` finds, sorted by `order` (ascending) and limited per query:
    of every wallet, or of each of the wallets `keys`, in the key index's order. Several
    wallets are asked by client id ($in on the indexed field, CLIENT_IDS_PER_QUERY at a
    time) and sorted here: never an $or of whole keys (secantusdb scans the whole log for
    any $or, 230-300 ms at 15,000 entries) nor one query per wallet (a round trip each: 50
    wallets 1.6 s against 12-21 ms on a server busy with live traffic)."""
    assert all(direction == 1 for _, direction in order)
    if not keys:
        return list(log.find(query).sort(order).limit(limit))
    wanted = set(keys)
    if len(wanted) == 1:
        return list(log.find({**query, **key_filter(keys[0])}).sort(order).limit(limit))
    by_key: dict[WalletKey, list[dict[str, Any]]] = {key: [] for key in wanted}
    for key, document in of_wallets(log, wanted, query):
        by_key[key].append(document)
    return [
        document
        for key in sorted(by_key, key=_index_order)
        for document in sorted(by_key[key], key=lambda doc: _ordered_by(doc, order))[:limit]
    ]


def _waiting_before(
    log: Collection[dict[str, Any]], below_seqs: dict[WalletKey, int]
) -> dict[WalletKey, set[EntryId]]:
    """Of these wallets, the entries TigerBeetle does not hold yet and is still to be given
    (pending, awaiting the backfill, outside the share) with a wallet_seq below the given
    one, by wallet (only wallets with any): one query by client id a chunk."""
    waiting: dict[WalletKey, set[EntryId]] = {}
    states = [MirrorState.PENDING, MirrorState.AWAITING_BACKFILL, MirrorState.OUTSIDE_SHARE]
    projection = {**dict.fromkeys(MONGO_KEY_FIELDS, 1), "wallet_seq": 1}
    for key, document in of_wallets(
        log, below_seqs, {"mirror_state": {"$in": states}}, projection=projection
    ):
        seq = document.get("wallet_seq")
        if isinstance(seq, int) and seq < below_seqs[key]:
            waiting.setdefault(key, set()).add(document["_id"])
    return waiting


def _index_order(key: WalletKey) -> tuple[str, ...]:
    """A wallet's place in the key index (client, country, currency, issuer)."""
    return tuple(key_filter(key)[name] for name in MONGO_KEY_FIELDS)


def _ordered_by(document: dict[str, Any], order: list[tuple[str, int]]) -> tuple[Any, ...]:
    """A document's sort key by `order`'s fields, a missing field first (as MongoDB sorts)."""
    return tuple((0,) if document.get(name) is None else (1, document[name]) for name, _ in order)


def _backfilled(
    entries: Iterable[dict[str, Any]], opening_seqs: dict[WalletKey, int]
) -> BackfilledEntries:
    found = BackfilledEntries()
    for entry in entries:
        key = key_of(entry)
        seq = opening_seqs.get(key)
        if seq is None or "wallet_seq" not in entry:
            continue
        within = entry["wallet_seq"] <= seq
        if within and entry.get("kind") in ("credit", "debit"):
            found.transactions.append(_covered(key, entry))
        if entry.get("mirror_state") in _RELEASED_STATES:
            (found.covered if within else found.after).append(entry["_id"])
    return found


def _update_each(
    log: Collection[dict[str, Any]],
    entry_ids: Sequence[EntryId],
    update: dict[str, Any],
    *,
    only_in: Sequence[str] | None = None,
) -> None:
    """The same update on each entry (only those in a state of `only_in`, when given), as
    one bulk write of single-document updates rather than an update_many over `$in`. The
    effect is the same on MongoDB; the embedded server (secantusdb 0.7.0b3) retries a write
    conflict of a multi-document update made outside a transaction while holding its
    collection's lock, so it deadlocks with a write transaction touching the same entry (a
    void): seen under load with TigerBeetle down (tests/faults/). A single-document update
    releases the lock between its retries."""
    still = {} if only_in is None else {"mirror_state": {"$in": list(only_in)}}
    requests = [UpdateOne({"_id": entry_id, **still}, update) for entry_id in entry_ids]
    log.bulk_write(requests, ordered=False)


class MirrorOutbox:
    """Pending log entries in, their fate out; MongoDB failures are StoreUnavailable."""

    def __init__(self, database: MongoDatabase) -> None:
        self.database = database

    def pending(self, limit: int, keys: Sequence[WalletKey] | None = None) -> list[OutboxEntry]:
        """Up to `limit` pending entries, each wallet's in wallet_seq order."""
        return self.pending_parking_malformed(limit, keys)[0]

    def pending_parking_malformed(
        self, limit: int, keys: Sequence[WalletKey] | None = None
    ) -> tuple[list[OutboxEntry], int]:
        """Pending entries as `pending`, and how many were parked instead because they
        cannot be read as a write (a field missing or of the wrong type): one malformed
        document never stops the mirror."""
        state = {"mirror_state": MirrorState.PENDING}
        order = [*WALLET_KEY_INDEX, ("wallet_seq", 1)]

        def read() -> tuple[list[OutboxEntry], int]:
            entries, malformed = [], []
            for document in _of_wallets(self.database.log(), state, keys, order, limit)[:limit]:
                try:
                    entries.append(outbox_entry(document))
                except (KeyError, TypeError, ValueError) as exc:
                    malformed.append((document["_id"], f"{type(exc).__name__}: {exc}"))
            for entry_id, problem in malformed:
                reason = f"cannot be mirrored: malformed log entry ({problem})"
                self.database.log().update_one(
                    {"_id": entry_id},
                    {
                        "$set": {
                            "mirror_state": MirrorState.PARKED,
                            "mirror_updated_at": datetime.now(UTC),
                            "mirror_error": reason[:500],
                        }
                    },
                )
            return entries, len(malformed)

        return self.database.guarded(read)

    def complete_logs(self, keys: Iterable[WalletKey]) -> set[WalletKey]:
        """Of these wallets, those born with the transaction log (the store marks them
        `log_complete`): their whole history is in the outbox, so they need no backfill.
        Read as the legacy scan reads wallets, so a wallet document that cannot be read
        fails here too."""
        snapshots = LegacyScan(self.database).snapshots(keys)
        return {key for key, snapshot in snapshots.items() if snapshot.log_complete}

    def has_unmirrored(self, key: WalletKey) -> bool:
        """Whether TigerBeetle may be behind MongoDB for this wallet (read-your-writes)."""
        query = {**key_filter(key), "mirror_state": {"$in": list(UNMIRRORED_STATES)}}
        return self.database.read(
            lambda: self.database.log().find_one(query, {"_id": 1}) is not None
        )

    def next_entry_after(self, key: WalletKey, wallet_seq: int) -> NextEntry | None:
        """The wallet's first logged change after `wallet_seq` (None: the wallet is there)."""
        query = {**key_filter(key), "wallet_seq": {"$gt": wallet_seq}}
        document = self.database.read(
            lambda: self.database.log().find_one(query, sort=[("wallet_seq", 1)])
        )
        if document is None:
            return None
        tb_timestamp = document.get("tb_timestamp")
        return NextEntry(
            entry_id=document["_id"],
            wallet_seq=int(document["wallet_seq"]),
            mirror_state=document.get("mirror_state"),
            tb_timestamp=int(tb_timestamp) if tb_timestamp else None,
        )

    def waiting_before(self, below_seqs: dict[WalletKey, int]) -> dict[WalletKey, set[EntryId]]:
        return self.database.read(lambda: _waiting_before(self.database.log(), below_seqs))

    def unmirrored_up_to(self, key: WalletKey, wallet_seq: int) -> dict[str, int]:
        """Entries up to `wallet_seq` TigerBeetle does not hold yet, by state."""
        query = {
            **key_filter(key),
            "wallet_seq": {"$lte": wallet_seq},
            "mirror_state": {"$in": list(UNMIRRORED_STATES)},
        }
        counts: dict[str, int] = {}
        for doc in self.database.read(
            lambda: list(self.database.log().find(query, {"mirror_state": 1}))
        ):
            counts[doc["mirror_state"]] = counts.get(doc["mirror_state"], 0) + 1
        return counts

    def mark(self, entry_ids: Sequence[EntryId], state: str, **fields: Any) -> None:
        if not entry_ids:
            return
        update = {"$set": {"mirror_state": state, "mirror_updated_at": datetime.now(UTC), **fields}}
        self.database.guarded(lambda: _update_each(self.database.log(), entry_ids, update))

    def mark_each(self, outcomes: dict[EntryId, tuple[str, dict[str, Any]]]) -> None:
        """Different states and fields per entry, in one bulk write."""
        if not outcomes:
            return
        now = datetime.now(UTC)
        requests = [
            UpdateOne(
                {"_id": entry_id},
                {"$set": {"mirror_state": state, "mirror_updated_at": now, **fields}},
            )
            for entry_id, (state, fields) in outcomes.items()
        ]
        self.database.guarded(lambda: self.database.log().bulk_write(requests, ordered=False))

    def set_outside_share(self, entries: Sequence[OutboxEntry]) -> None:
        """Pending entries of clients outside the dual-write share wait for it, each with
        its client's bucket (so a raise releases exactly those it takes in). Only entries
        still pending change: one another run applied stays as it is."""
        if not entries:
            return
        requests = [
            UpdateOne(
                {"_id": entry.entry_id, "mirror_state": MirrorState.PENDING},
                {
                    "$set": {
                        "mirror_state": MirrorState.OUTSIDE_SHARE,
                        "share_bucket": client_bucket(entry.key.client_id),
                        "mirror_updated_at": datetime.now(UTC),
                    }
                },
            )
            for entry in entries
        ]
        self.database.guarded(lambda: self.database.log().bulk_write(requests, ordered=False))

    def release_outside_share(self, *, bucket_limit: int) -> int:
        """Entries of clients now inside the share (bucket below `bucket_limit`) go to the
        mirror (`pending`); how many were released."""
        query = {
            "mirror_state": MirrorState.OUTSIDE_SHARE,
            "share_bucket": {"$lt": bucket_limit},
        }
        released = {"mirror_state": MirrorState.PENDING, "mirror_updated_at": datetime.now(UTC)}
        result = self.database.guarded(
            lambda: self.database.log().update_many(query, {"$set": released})
        )
        return int(result.modified_count)

    def count_failed_attempt(self, entry_ids: Sequence[EntryId], error: str) -> None:
        if not entry_ids:
            return
        update = {"$inc": {"mirror_attempts": 1}, "$set": {"mirror_error": error[:500]}}
        self.database.guarded(lambda: _update_each(self.database.log(), entry_ids, update))

    def release_backfilled(self, opening_seqs: dict[WalletKey, int]) -> None:
        """After the backfill imported wallets at their opening seqs: older entries are in
        the opening balance (`covered`), newer ones go to the mirror. One read and at most
        two writes for the whole page."""
        if not opening_seqs:
            return

        def read() -> BackfilledEntries:
            waiting = self.database.log().find(
                {
                    "client_id": {"$in": sorted({key.client_id for key in opening_seqs})},
                    "mirror_state": {"$in": _RELEASED_STATES},
                },
                {**dict.fromkeys(MONGO_KEY_FIELDS, 1), "wallet_seq": 1, "mirror_state": 1},
            )
            return _backfilled(waiting, opening_seqs)

        self.release(self.database.read(read))

    def backfilled_entries(self, opening_seqs: dict[WalletKey, int]) -> BackfilledEntries:
        """The log entries of wallets the backfill imported at their opening seqs, in one
        read: the credits and debits the snapshots cover, and the waiting entries to release
        (`release`). Read after the wallets' registry rows are in, as `release_backfilled`'s
        read is: a mirror run that parks an entry after it finds the rows and releases it."""
        if not opening_seqs:
            return BackfilledEntries()

        clients = {"client_id": {"$in": sorted({key.client_id for key in opening_seqs})}}

        def read() -> BackfilledEntries:
            # Two indexed reads, not one with an $or (secantusdb scans the whole log for it).
            log = self.database.log()
            entries = {
                document["_id"]: document
                for condition in (
                    {"kind": {"$in": ["credit", "debit"]}},
                    {"mirror_state": {"$in": _RELEASED_STATES}},
                )
                for document in log.find({**clients, **condition})
            }
            return _backfilled(entries.values(), opening_seqs)

        return self.database.read(read)

    def release(self, entries: BackfilledEntries) -> None:
        """Waiting entries the opening balances cover become `covered`, later ones go to the
        mirror (`pending`): at most two bulk writes. Only those still waiting: one a mirror
        run (or another backfill) moved on since they were read keeps its state, so a
        mirrored entry is never set back to pending and sent again."""
        if not (entries.covered or entries.after):
            return
        waiting, log = _RELEASED_STATES, self.database.log()

        def write() -> None:
            if entries.covered:
                covered = {"$set": {"mirror_state": MirrorState.COVERED}}
                _update_each(log, entries.covered, covered, only_in=waiting)
            if entries.after:
                pending = {"$set": {"mirror_state": MirrorState.PENDING}}
                _update_each(log, entries.after, pending, only_in=waiting)

        self.database.guarded(write)

    def requeue_parked(self, keys: Sequence[WalletKey] | None = None) -> int:
        """Support's retry of parked entries (after fixing what refused them)."""
        parked = {"mirror_state": MirrorState.PARKED}
        requeue = {"$set": {"mirror_state": MirrorState.PENDING, "mirror_attempts": 0}}

        def write() -> int:
            log = self.database.log()
            if not keys:
                return log.update_many(parked, requeue).modified_count
            return sum(
                log.update_many({**parked, **key_filter(key)}, requeue).modified_count
                for key in set(keys)
            )

        return self.database.guarded(write)

    def parked_wallets(self, limit: int) -> list[WalletKey]:
        """Up to `limit` wallets with parked entries (the mirror is queued for each when
        support requeues them)."""

        def read() -> list[WalletKey]:
            groups = self.database.log().aggregate(
                [
                    {"$match": {"mirror_state": MirrorState.PARKED}},
                    {"$group": {"_id": {field: f"${field}" for field in MONGO_KEY_FIELDS}}},
                    {"$limit": limit},
                ]
            )
            return [key_of(group["_id"]) for group in groups]

        return self.database.read(read)

    def depth(self) -> OutboxDepth:
        """Entries per waiting state, and the age of the oldest pending one in seconds."""

        def read() -> OutboxDepth:
            log = self.database.log()
            counts = {
                state: log.count_documents({"mirror_state": state})
                for state in (*WAITING_STATES, MirrorState.OUTSIDE_SHARE)
            }
            oldest = log.find_one(
                {"mirror_state": MirrorState.PENDING},
                {"created_at": 1},
                sort=[("created_at", 1)],
            )
            lag_s = 0
            if oldest is not None:
                lag_s = int((datetime.now(UTC) - oldest["created_at"]).total_seconds())
            return OutboxDepth(
                pending=counts[MirrorState.PENDING],
                parked=counts[MirrorState.PARKED],
                awaiting_backfill=counts[MirrorState.AWAITING_BACKFILL],
                oldest_pending_age_s=lag_s,
                outside_share=counts[MirrorState.OUTSIDE_SHARE],
            )

        return self.database.read(read)

    def waiting_of(self, key: WalletKey) -> WalletWaiting:
        """The wallet's waiting entries by state, and its oldest pending one's time (support's
        page says how strong a difference is from them)."""
        query = {**key_filter(key), "mirror_state": {"$in": list(WAITING_STATES)}}

        def read() -> WalletWaiting:
            counts: dict[str, int] = {}
            oldest: datetime | None = None
            for document in self.database.log().find(query, {"mirror_state": 1, "created_at": 1}):
                state = document["mirror_state"]
                counts[state] = counts.get(state, 0) + 1
                created = document.get("created_at")
                if (
                    state == MirrorState.PENDING
                    and created
                    and (oldest is None or created < oldest)
                ):
                    oldest = created
            return WalletWaiting(
                pending=counts.get(MirrorState.PENDING, 0),
                parked=counts.get(MirrorState.PARKED, 0),
                awaiting_backfill=counts.get(MirrorState.AWAITING_BACKFILL, 0),
                oldest_pending_at=oldest,
            )

        return self.database.read(read)

    def logged_transaction_ids(
        self, key: WalletKey, *, limit: int, tb_timestamp: int | None = None
    ) -> list[str]:
        """The ids of the wallet's logged credits and debits, newest first; the one the
        mirror applied at `tb_timestamp` first, when given (support's repair looks for the
        transaction a TigerBeetle transfer was posted for)."""

        def read() -> list[str]:
            log = self.database.log()
            ids: list[str] = []
            if tb_timestamp:
                hit = log.find_one({**key_filter(key), "tb_timestamp": tb_timestamp}, {"_id": 1})
                if hit is not None and isinstance(hit["_id"], str):
                    ids.append(hit["_id"])
            found = (
                log.find({**key_filter(key), "kind": {"$in": ["credit", "debit"]}}, {"_id": 1})
                .sort([("created_at", -1)])
                .limit(limit)
            )
            ids += [document["_id"] for document in found if isinstance(document["_id"], str)]
            return ids

        return self.database.read(read)

    def parked(
        self, limit: int = 100, keys: Sequence[WalletKey] | None = None
    ) -> list[ParkedEntry]:
        """The oldest parked entries first (of these wallets, when given)."""
        parked = {"mirror_state": MirrorState.PARKED}

        def read() -> list[ParkedEntry]:
            found = sorted(
                _of_wallets(self.database.log(), parked, keys, [("created_at", 1)], limit),
                key=lambda document: document.get("created_at") or _EARLIEST,
            )[:limit]
            return [
                ParkedEntry(
                    entry_id=document["_id"],
                    kind=document.get("kind", ""),
                    created_at=document.get("created_at"),
                    mirror_error=document.get("mirror_error", ""),
                )
                for document in found
            ]

        return self.database.read(read)
