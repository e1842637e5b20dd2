"""Credits and debits copied back from TigerBeetle (leaving phase 4) in one MongoDB
transaction per batch, instead of a transaction each.

The step back's pause waits for what the passes before it could not copy; a copy of its own
costs some 30 ms on a server that also carries client traffic, so at 100 writes/s the
passes never caught up (docs/benchmarks.md). A batch reads its ids' entries and its
wallets at once, walks its writes in TigerBeetle's order in memory, and writes once, as
`ledger.stores.mongo_batch` does for a client's batch. It must leave exactly what its
writes copied one by one leave: each write first expires its wallet's holds due by its
own time there, so a batch in which one of a wallet's holds falls due between its first
and its last write, or in which any write would be refused (TigerBeetle took them all, so
a refusal is a difference the single copy reports), is not taken: the caller copies those
writes one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymongo.client_session import ClientSession

from domain.holds import HoldState
from domain.ids import WalletKey
from domain.money import BALANCE_MINOR_MAX
from domain.wallets import TransactionKind, write_time
from ledger.stores.mongo_batch import batch_wallets, find_in, wallet_seqs, write_batch
from ledger.stores.mongo_batch_holds import BatchWallet
from ledger.stores.mongo_documents import (
    MONGO_KEY_FIELDS,
    PostedWrite,
    key_of,
    known_answer,
    posted_entry,
)
from ledger.stores.mongo_holds import expire_due

if TYPE_CHECKING:
    from ledger.stores.mongo_store import MongoWalletStore


@dataclass(frozen=True)
class CopiedWrite:
    """A credit or debit TigerBeetle took alone, at its time there (`created_at`)."""

    key: WalletKey
    kind: TransactionKind
    amount_minor: int
    transaction_id: str
    created_at: datetime
    made_by: str

    def __post_init__(self) -> None:
        assert self.kind in (TransactionKind.CREDIT, TransactionKind.DEBIT), self.kind
        assert self.amount_minor > 0, "a copied write moves a positive amount"


class NotOneBatch(Exception):
    """The writes cannot be copied as one batch and leave what their single copies leave
    (a hold due among a wallet's writes, a write MongoDB would refuse or that conflicts
    with an entry of its id): nothing was written; copy them one by one."""


def copy_back_writes(store: MongoWalletStore, writes: Sequence[CopiedWrite]) -> int:
    """`writes` (in TigerBeetle's order) into MongoDB in one transaction, as entries marked
    copied back; how many were new (an id MongoDB already holds alike is a replay).
    NotOneBatch when the batch would not leave what single copies leave; StoreUnavailable
    (nothing written) when MongoDB fails."""
    assert writes, "a batch copies at least one write"
    database = store.database
    client_ids = sorted({write.key.client_id for write in writes})

    def marks() -> object:
        return wallet_seqs(database, client_ids)

    def apply(session: ClientSession) -> int:
        return _apply(store, session, writes)

    return database.guarded(lambda: database.transaction(apply, wallet_mark=marks))


def _apply(store: MongoWalletStore, session: ClientSession, writes: Sequence[CopiedWrite]) -> int:
    database = store.database
    now = datetime.now(UTC)
    first_at: dict[WalletKey, datetime] = {}
    last_at: dict[WalletKey, datetime] = {}
    for write in writes:
        first_at.setdefault(write.key, min(write.created_at, now))
        last_at[write.key] = min(write.created_at, now)
    _expire_due_as_the_single_copies_would(store, session, first_at=first_at, last_at=last_at)
    known = {
        entry["_id"]: entry
        for entry in find_in(
            database.log(), "_id", [write.transaction_id for write in writes], session=session
        )
    }
    wallets = batch_wallets(database, session, list(first_at))
    entries: list[dict[str, Any]] = []
    for write in writes:
        entry = known.get(write.transaction_id)
        if entry is None:
            entries.append(_walk(store, write, wallets[write.key]))
        elif isinstance(known_answer(entry, write.kind, write.key, write.amount_minor), Exception):
            raise NotOneBatch(f"{write.transaction_id!r} conflicts with MongoDB's entry of it")
    created_at = {write.key: write.created_at for write in reversed(writes)}  # the first
    write_batch(
        database,
        session,
        wallets,
        entries,
        now=now,
        written_at=lambda key: write_time(created_at[key]),
    )
    return len(entries)


def _expire_due_as_the_single_copies_would(
    store: MongoWalletStore,
    session: ClientSession,
    *,
    first_at: dict[WalletKey, datetime],
    last_at: dict[WalletKey, datetime],
) -> None:
    """Each wallet's holds due by its first write's time expire first, as that write's
    single copy expires them; one due after it but by its last write's time would expire
    between two of its writes: NotOneBatch. One query finds the few wallets with any."""
    latest = max(last_at.values())
    due: dict[WalletKey, list[datetime]] = {}
    for hold in find_in(
        store.database.holds(),
        "client_id",
        sorted({key.client_id for key in first_at}),
        also={"state": HoldState.OPEN.value, "expires_at": {"$lte": latest}},
        projection=[*MONGO_KEY_FIELDS, "expires_at"],
        session=session,
    ):
        due.setdefault(key_of(hold), []).append(hold["expires_at"].replace(tzinfo=UTC))
    for key, expiries in due.items():
        if key not in first_at:
            continue  # another currency's wallet of the same client
        if any(first_at[key] < expiry <= last_at[key] for expiry in expiries):
            raise NotOneBatch(f"a hold of {key.describe()} falls due among its copied writes")
        if any(expiry <= first_at[key] for expiry in expiries):
            expire_due(store.database, key, now=first_at[key], session=session, marks=store.marks)


def _walk(store: MongoWalletStore, write: CopiedWrite, wallet: BatchWallet) -> dict[str, Any]:
    """The write on its wallet as it stands, and its log entry as its single copy writes
    it; NotOneBatch where the single copy would be refused."""
    key, amount_minor = write.key, write.amount_minor
    if write.kind is TransactionKind.CREDIT:
        if wallet.historical + amount_minor > BALANCE_MINOR_MAX:
            raise NotOneBatch(f"{write.transaction_id!r} would pass the balance limit")
        wallet.credit += amount_minor
        wallet.historical += amount_minor
    else:
        if not wallet.exists() or wallet.credit - wallet.held < amount_minor:
            raise NotOneBatch(f"{write.transaction_id!r} would be refused by MongoDB")
        wallet.credit -= amount_minor
        wallet.debit += amount_minor
    wallet.seq += 1
    wallet.posted += 1
    posted = PostedWrite(
        write.transaction_id,
        write.kind,
        key,
        amount_minor,
        write.made_by,
        write_time(write.created_at),
    )
    return posted_entry(
        posted,
        balance=wallet.balance(),
        wallet_seq=wallet.seq,
        mirror_state=store.marks.copied_back,
    )
