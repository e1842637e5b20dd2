"""The migration's read of MongoDB's wallet documents: every wallet a page at a time (the
backfill imports them, reconciliation compares them) and chosen wallets by key, each as a
typed snapshot of its balance and the `wallet_seq` it stands at.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pymongo
from pymongo.errors import PyMongoError

from domain import errors
from domain.ids import WalletKey
from domain.wallets import WalletBalance
from ledger.stores.mongo_database import MongoDatabase
from ledger.stores.mongo_documents import balance_of, of_wallets
from ledger.stores.mongo_holds import held_minor
from migration.pacing import WalletPace

# How long one read of the scan (or the count of its wallets) may take, beyond a request's
# MONGO_TIMEOUT_S: the embedded server (secantusdb) answers a find's first batch only once it
# has read every document the find matches, about 5 s for a million wallets here (a mongod
# streams them), and counts them one by one; with live traffic on the same server, longer.
SCAN_READ_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class WalletSnapshot:
    """A wallet document as one read saw it: balance and the seq it stands at."""

    balance: WalletBalance
    wallet_seq: int
    created_at: datetime | None
    log_complete: bool
    # What the document records as held (its open holds, expired ones included until a write
    # or the sweep marks them): 0 means no hold is open. `balance` is the posted balance.
    recorded_held_minor: int = 0


def snapshot_of(document: dict[str, Any]) -> WalletSnapshot:
    balance = balance_of(document)
    return WalletSnapshot(
        balance=balance,
        wallet_seq=int(document.get("wallet_seq", 0)),
        created_at=document.get("created_at"),
        log_complete=bool(document.get("log_complete", False)),
        recorded_held_minor=held_minor(document, balance.key),
    )


class LegacyScan:
    """MongoDB's wallet documents as snapshots; MongoDB failures are StoreUnavailable."""

    def __init__(self, database: MongoDatabase, *, pace: WalletPace | None = None) -> None:
        """`pace`: the jobs' rate (`migration.pacing`); `wallet_batches` takes each page
        from it. None: as fast as MongoDB answers."""
        self.database = database
        self.pace = pace

    def snapshots(self, keys: Iterable[WalletKey]) -> dict[WalletKey, WalletSnapshot]:
        """Wallet documents by key. Asks by client id ($in on the indexed field, in chunks)
        and keeps the wanted keys: an $or of thousands of whole keys is far slower to evaluate."""
        wanted = set(keys)
        if not wanted:
            return {}

        def read() -> dict[WalletKey, WalletSnapshot]:
            wallets = of_wallets(self.database.wallets(), wanted)
            return {key: snapshot_of(document) for key, document in wallets}

        return self.database.read(read)

    def wallet_count(self) -> int:
        """How many wallet documents there are, from the collection's metadata (no scan):
        what a reconciliation run reports its progress against."""

        def count() -> int:
            with pymongo.timeout(SCAN_READ_TIMEOUT_S):  # the embedded server counts them
                return self.database.wallets().estimated_document_count()

        return self.database.read(count)

    def wallet_batches(self, batch_size: int) -> Iterator[list[WalletSnapshot]]:
        """Every wallet document, `batch_size` at a time, from one streaming cursor in
        natural order (one collection scan: paging with skip or key ranges re-scans, which
        costs quadratic time on large collections). Each page waits for the scan's pace."""
        try:
            documents = iter(self.database.wallets().find({}, batch_size=batch_size))
            batch: list[WalletSnapshot] = []
            while True:
                with pymongo.timeout(SCAN_READ_TIMEOUT_S):
                    document = next(documents, None)
                if document is None:
                    break
                batch.append(snapshot_of(document))
                if len(batch) == batch_size:
                    self._wait_for(batch)
                    yield batch
                    batch = []
            if batch:
                self._wait_for(batch)
                yield batch
        except PyMongoError as exc:
            raise errors.StoreUnavailable(f"MongoDB failed: {exc}") from exc

    def _wait_for(self, batch: list[WalletSnapshot]) -> None:
        if self.pace is not None:
            self.pace.take(len(batch))
